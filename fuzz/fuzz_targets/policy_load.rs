//! Policy and response files: `- policy:` items through the rules loader (as `guard run
//! --policies` and `guard validate` load them), their kernel and fallback forms, and response
//! files through the response loader, with the result matched against sample alerts.
#![no_main]

use std::{hint::black_box, path::Path};

use guard::{
    policy::{self, fallback, kernel},
    respond::{ResponseSet, config::parse_str},
    rules::Loader,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    let mut l = Loader::new();
    let sink = policy::register(&mut l);
    l.add_str("fuzz-policy.yaml", text);
    let (_, diags) = l.finish();
    for d in &diags {
        black_box(d.to_string());
    }
    let policies = sink.lock().map(|v| v.clone()).unwrap_or_default();
    black_box(policy::overlap_warnings(&policies));
    for (i, p) in policies.iter().enumerate() {
        let id = i as u32 + 1;
        black_box(kernel::policy_flags(p, false));
        black_box(kernel::policy_flags(p, true));
        black_box(kernel::path_entries(id, p));
        black_box(kernel::net_entries(id, p));
        black_box(p.has_kernel_rules());
        for path in ["/etc/shadow", "/usr/bin/curl", "/tmp/x/../y", ""] {
            black_box(fallback::check_open(p, path, 0o2));
            black_box(fallback::check_open(p, path, 0));
        }
    }
    for w in common::workloads() {
        black_box(policy::choose(&policies, w));
    }

    let mut set = ResponseSet::default();
    for d in parse_str(Path::new("fuzz-responses.yaml"), text, &mut set) {
        black_box(d.to_string());
    }
    for r in &set.responses {
        for a in common::alerts() {
            for w in common::workloads() {
                black_box(r.matcher.matches(a, w));
            }
        }
        for act in &r.actions {
            black_box((act.name(), act.is_disruptive()));
        }
    }
});
