//! YAML inputs (rules, policies, responses, `guard.yaml`): the one [`Diagnostic`] type, the one
//! way to find where a key path sits in a text ([`Locator`]), and the alias-expansion bound
//! every input is checked against before it is parsed.

mod diag;
mod expansion;
mod locate;

pub use diag::{Diagnostic, Pos, Severity, closest, levenshtein};
pub use expansion::{TooLarge, check_expansion, max_nodes};
pub use locate::{Locator, Seg};
