//! Rules files and conditions: what `guard validate` and the agent's rule loading do with a
//! rules file (load, `- policy:` items, compile), then the compiled rules run on sample events.
#![no_main]

use std::hint::black_box;

use guard::rules::{Engine, Matcher};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The condition language on its own (a condition is any string).
    let _ = black_box(guard::rules::parser::parse(text));

    let mut l = guard::cli::validate::loader();
    let policies = guard::policy::register(&mut l);
    l.add_str("fuzz.yaml", text);
    let (set, diags) = l.finish();
    for d in &diags {
        black_box(d.to_string());
    }
    let policies = policies.lock().map(|v| v.clone()).unwrap_or_default();
    black_box(guard::policy::overlap_warnings(&policies));

    let engine = Engine::new(set, "fuzz-host");
    let mut m = Matcher::default();
    for ev in common::events() {
        black_box(engine.alerts(ev, &mut m));
    }
});
