//! Python and numpy arithmetic and text, emulated: the toolkit's numbers and bytes depend on
//! CPython's `repr`/`str`/`json.dump`, numpy's pairwise sums and percentile interpolation, and
//! `statistics`' correctly rounded mean and standard deviation. Nothing here knows about steps.

pub mod exact;
pub mod json;
pub mod literal;
pub mod npstats;
pub mod percentile;
pub mod repr;
pub mod time;
