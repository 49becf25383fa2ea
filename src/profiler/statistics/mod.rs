//! Statistics of our own, next to the toolkit-compatible numbers: calls paired by UUID, sample
//! (not population) deviations, t and bootstrap intervals ([`stats`]), and significance tests
//! between two runs ([`compare`]). The toolkit has no counterpart, so these follow textbook
//! definitions rather than its quirks.

pub mod compare;
pub mod cost;
pub mod scores;
pub mod stats;
