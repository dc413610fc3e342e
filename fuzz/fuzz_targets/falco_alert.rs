//! The Falco HTTP intake: a `POST /falco` body becomes an alert (`parse_falco_alert`, what the
//! handler calls), its context, the shipped responses' matching, and its renderings.
#![no_main]

use std::hint::black_box;

use guard::{
    audit::Workload,
    output::{Format, format_alert},
    respond::{AlertContext, falco::parse_falco_alert, valid_container_id},
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(alert) = parse_falco_alert(data) else {
        return;
    };
    let ctx = AlertContext::from_alert(&alert);
    if let Some(id) = &ctx.workload.container_id {
        black_box(valid_container_id(id));
    }
    for r in &common::responses().responses {
        black_box(r.matcher.matches(&alert, &ctx.workload));
    }
    let w = Workload::from_alert(&alert);
    black_box((w.label(), w.identifiers()));
    black_box(format_alert(&alert, Format::Text));
    black_box(format_alert(&alert, Format::Json));
});
