//! guard: a runtime security engine for container hosts.
//!
//! Modules follow the data flow: `probes` loads the eBPF programs, `events` decodes their
//! records, `agent` runs the pipeline, `doctor` checks the host, `cli` is the command line.

pub mod agent;
pub mod alert;
pub mod audit;
pub mod audit_cmd;
pub mod btf;
pub mod cli;
pub mod doctor;
pub mod events;
pub mod output;
pub mod probes;
pub mod state;
pub mod report;
pub mod respond;
pub mod respond_cmd;
pub mod workload;
