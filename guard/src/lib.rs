//! guard: a runtime security engine for container hosts.
//!
//! Modules follow the data flow: `probes` loads the eBPF programs, `events` decodes their
//! records, `agent` runs the pipeline, `model` is the enriched event, `rules` is the Falco
//! rule language, `doctor` checks the host. `cli` is the command line, on top: it holds every
//! subcommand, and no other module imports it (modules import downward only; the test
//! `guard/tests/module_graph.rs` checks it).

pub mod agent;
pub mod alert;
pub mod audit;
pub mod btf;
pub mod capture;
pub mod cli;
pub mod config;
pub mod dns;
pub mod doctor;
pub mod events;
pub mod fanotify;
pub mod harden;
pub mod learn;
pub mod lsm;
pub mod metrics;
pub mod model;
pub mod object;
pub mod output;
pub mod policy;
pub mod prefilter;
pub mod probes;
pub mod procroot;
pub mod reload;
pub mod report;
pub mod respond;
pub mod rfc3339;
pub mod rules;
pub mod selfprotect;
pub mod sockaddr;
pub mod state;
pub mod syscall_links;
pub mod sysfs;
pub mod workload;
pub mod yaml;
