//! Which toolkit version's outputs a run follows: aiqtoolkit 1.1.0 or nvidia-nat 1.9.0.
//!
//! The two profilers share almost every algorithm; where nat 1.9 changed one, the analysis takes
//! the dialect and branches where the difference is (docs/toolkit-semantics.md#nvidia-nat-19-dialect),
//! rather than keeping a copy of the code per version.

use crate::trace::{IntermediateStep, StepSchema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Dialect {
    /// aiqtoolkit 1.1.0 (module `aiq`), the profiler agentprof first reproduced.
    #[default]
    #[serde(rename = "aiq-1.1")]
    Aiq11,
    /// nvidia-nat 1.9.0 (NeMo Agent Toolkit, module `nat`).
    #[serde(rename = "nat-1.9")]
    Nat19,
}

impl Dialect {
    pub const ALL: [Dialect; 2] = [Dialect::Aiq11, Dialect::Nat19];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Aiq11 => "aiq-1.1",
            Dialect::Nat19 => "nat-1.9",
        }
    }

    pub fn parse(s: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether a step is in nat 1.9's schema: nat requires a top-level `parent_id`, which aiq 1.1
    /// forbids, so its presence alone decides (nothing else nat added is required).
    pub fn is_nat_step(step: &IntermediateStep) -> bool {
        step.parent_id.is_some()
    }

    /// The dialect steps imply when none is given: nat-1.9 as soon as one step is in its schema.
    pub fn detect<'a>(steps: impl IntoIterator<Item = &'a IntermediateStep>) -> Dialect {
        if steps.into_iter().any(Dialect::is_nat_step) {
            Dialect::Nat19
        } else {
            Dialect::Aiq11
        }
    }

    /// The schema this toolkit writes the steps it read in (its combined requests file).
    pub fn step_schema(self) -> StepSchema {
        match self {
            Dialect::Aiq11 => StepSchema::Aiq,
            Dialect::Nat19 => StepSchema::Nat,
        }
    }

    /// nat 1.9's nested-stack analysis also makes call-tree nodes of FUNCTION and SPAN steps.
    pub fn function_nodes(self) -> bool {
        self == Dialect::Nat19
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Dialect, String> {
        Dialect::parse(s).ok_or_else(|| format!("unknown toolkit {s:?}: use aiq-1.1 or nat-1.9"))
    }
}
