//! Shared helpers for guard's cross-cutting tests (see `tests/tests/`).
pub mod audit_fixture;
pub mod corpus;
pub mod harness;
pub mod respond_util;
