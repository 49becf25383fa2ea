//! What a run's LLM calls cost, from a table of prices per model.
//!
//! The toolkit reports tokens, never money, and providers price tokens differently by kind
//! (prompt, completion, prompt served from a cache). A price table says, per model, what a
//! million tokens of each kind cost; a call's cost is its LLM_END's tokens times its model's
//! prices. A model the table does not price is listed apart, never counted as free: a total
//! that silently left out a model would understate the very cost a regression gate watches.

use super::stats::Summary;
use crate::profiler::core::frame::{Frame, Row};
use crate::trace::EventType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The currency of every price and cost.
pub const CURRENCY: &str = "USD";

/// Prices are per this many tokens, as providers list them.
const TOKENS_PER_PRICE: f64 = 1_000_000.0;

/// Prices per model (`--prices`, a run's `prices`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriceTable {
    /// By model name, as the LLM_END steps name it (`payload.name`).
    #[serde(default)]
    pub models: BTreeMap<String, ModelPrice>,
}

/// One model's prices, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelPrice {
    /// Per million prompt tokens.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub input: f64,
    /// Per million completion tokens.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub output: f64,
    /// Per million prompt tokens served from the provider's cache (nat's `cached_tokens`);
    /// absent: cached tokens cost `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub cached_input: Option<f64>,
}

/// A price that cannot be used, with where it is in the table (a JSON pointer relative to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPrice {
    pub pointer: String,
    pub message: String,
}

impl PriceTable {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// A price table as a file holds it: JSON, or YAML (of which JSON is a subset, but JSON's
    /// own parser names a JSON file's mistakes better). Checked as [`PriceTable::validate`].
    pub fn parse(text: &str) -> Result<PriceTable, String> {
        let table: PriceTable = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        table
            .validate()
            .map_err(|e| format!("{}: {}", e.pointer, e.message))?;
        Ok(table)
    }

    /// Every price must be a finite number of 0 or more: a negative price would let a costlier
    /// run pass a gate.
    pub fn validate(&self) -> Result<(), InvalidPrice> {
        for (model, price) in &self.models {
            let fields = [
                ("input", Some(price.input)),
                ("output", Some(price.output)),
                ("cached_input", price.cached_input),
            ];
            for (field, value) in fields {
                if let Some(v) = value
                    && !(v.is_finite() && v >= 0.0)
                {
                    return Err(InvalidPrice {
                        pointer: format!("/models{}/{field}", crate::trace::pointer_segment(model)),
                        message: format!(
                            "a price must be a finite number of 0 or more, not {v} (USD per \
                             million tokens)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// `price` for every model `frame`'s LLM calls name: a table that leaves nothing unpriced,
    /// for measuring what costing a run takes.
    pub fn every_model(frame: &Frame, price: ModelPrice) -> PriceTable {
        let models = compute(frame, &PriceTable::default()).unpriced_models;
        PriceTable {
            models: models.into_keys().map(|m| (m, price)).collect(),
        }
    }

    /// What one LLM_END costs, or `None` when its model has no price.
    fn call_cost(&self, model: &str, tokens: CallTokens) -> Option<f64> {
        let p = self.models.get(model)?;
        Some(tokens.cost(p))
    }
}

/// The tokens of one LLM call, as its LLM_END reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CallTokens {
    prompt: i64,
    completion: i64,
    /// Of `prompt`, those served from a cache (never more than `prompt`).
    cached: i64,
}

impl CallTokens {
    /// A negative count (the toolkit's model does not forbid one) is taken as 0: it would make
    /// a call earn money, and a costlier run pass a gate. A report of more cached than prompt
    /// tokens is taken as all of them cached.
    fn of(row: Row<'_>) -> CallTokens {
        let prompt = row.prompt_tokens().max(0);
        CallTokens {
            prompt,
            completion: row.completion_tokens().max(0),
            cached: row.cached_tokens().clamp(0, prompt),
        }
    }

    fn cost(self, p: &ModelPrice) -> f64 {
        let cached_price = p.cached_input.unwrap_or(p.input);
        ((self.prompt - self.cached) as f64 * p.input
            + self.cached as f64 * cached_price
            + self.completion as f64 * p.output)
            / TOKENS_PER_PRICE
    }
}

/// One priced model's calls and what they cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelCost {
    pub calls: u64,
    pub prompt_tokens: i64,
    /// Of the prompt tokens, those served from the provider's cache.
    pub cached_tokens: i64,
    pub completion_tokens: i64,
    /// The prices applied (USD per million tokens).
    pub prices: ModelPrice,
    /// USD.
    pub cost: f64,
}

/// A model the price table has no price for: its calls are left out of every cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnpricedModel {
    pub calls: u64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// `cost` in `GET /v1/runs/{run_id}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunCost {
    /// Always `USD`.
    pub currency: &'static str,
    /// The cost of the calls of priced models.
    pub total: f64,
    pub by_model: BTreeMap<String, ModelCost>,
    /// Models that have calls but no price, with their calls: not counted in any cost.
    pub unpriced_models: BTreeMap<String, UnpricedModel>,
    /// Whether every call was priced, so that `total` is the run's whole cost.
    pub complete: bool,
    /// What a request cost (the sum of its calls; 0 without calls), over the requests whose
    /// every call was priced, with intervals for the mean.
    pub per_request: Summary,
    /// Requests left out of `per_request` because a call of theirs has no price.
    pub requests_unpriced: usize,
}

/// Each request's cost, by request number, when every call of it is priced (`None` for a
/// request that has an unpriced call). Requests without steps are left out, as everywhere.
pub fn per_request(frame: &Frame, prices: &PriceTable) -> BTreeMap<i64, Option<f64>> {
    let mut out = BTreeMap::new();
    for (req, rows) in frame.iter_requests() {
        if rows.is_empty() {
            continue;
        }
        let mut sum = Some(0.0);
        for r in rows.iter().filter(|r| r.event_type() == EventType::LlmEnd) {
            sum = sum
                .zip(prices.call_cost(r.llm_name(), CallTokens::of(r)))
                .map(|(s, c)| s + c);
        }
        out.insert(req.number, sum);
    }
    out
}

/// The run's cost under `prices`.
pub fn compute(frame: &Frame, prices: &PriceTable) -> RunCost {
    #[derive(Default)]
    struct Sums {
        calls: u64,
        prompt: i64,
        cached: i64,
        completion: i64,
    }
    let mut per_model: BTreeMap<&str, Sums> = BTreeMap::new();
    for r in frame
        .rows()
        .iter()
        .filter(|r| r.event_type() == EventType::LlmEnd)
    {
        let t = CallTokens::of(r);
        let s = per_model.entry(r.llm_name()).or_default();
        s.calls += 1;
        s.prompt = s.prompt.saturating_add(t.prompt);
        s.cached = s.cached.saturating_add(t.cached);
        s.completion = s.completion.saturating_add(t.completion);
    }
    let (mut by_model, mut unpriced_models) = (BTreeMap::new(), BTreeMap::new());
    for (model, s) in per_model {
        match prices.models.get(model) {
            Some(p) => {
                // The sums of tokens times the prices: the same as the sum of the calls' costs,
                // without the rounding of adding a cost per call.
                let tokens = CallTokens {
                    prompt: s.prompt,
                    completion: s.completion,
                    cached: s.cached,
                };
                by_model.insert(
                    model.to_owned(),
                    ModelCost {
                        calls: s.calls,
                        prompt_tokens: s.prompt,
                        cached_tokens: s.cached,
                        completion_tokens: s.completion,
                        prices: *p,
                        cost: tokens.cost(p),
                    },
                );
            }
            None => {
                unpriced_models.insert(
                    model.to_owned(),
                    UnpricedModel {
                        calls: s.calls,
                        prompt_tokens: s.prompt,
                        completion_tokens: s.completion,
                    },
                );
            }
        }
    }
    let requests = per_request(frame, prices);
    let costs: Vec<f64> = requests.values().flatten().copied().collect();
    RunCost {
        currency: CURRENCY,
        total: by_model.values().map(|m| m.cost).sum(),
        complete: unpriced_models.is_empty(),
        by_model,
        unpriced_models,
        per_request: Summary::of(&costs),
        requests_unpriced: requests.values().filter(|c| c.is_none()).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame() -> Frame {
        let steps = |req: i64, model: &str, prompt: i64, completion: i64, cached: i64| {
            json!([
                {"payload": {"event_type": "LLM_START", "event_timestamp": 1.0 + req as f64,
                             "name": model, "UUID": format!("u{req}")}},
                {"payload": {"event_type": "LLM_END", "event_timestamp": 2.0 + req as f64,
                             "name": model, "UUID": format!("u{req}"),
                             "usage_info": {"token_usage": {"prompt_tokens": prompt,
                                 "completion_tokens": completion, "cached_tokens": cached,
                                 "total_tokens": prompt + completion}}}}
            ])
        };
        let doc = json!([
            {"request_number": 0, "intermediate_steps": steps(0, "a", 1000, 200, 400)},
            {"request_number": 1, "intermediate_steps": steps(1, "a", 3000, 100, 0)},
            {"request_number": 2, "intermediate_steps": steps(2, "b", 10, 10, 0)},
        ]);
        crate::profiler::testutil::frame_of_json(doc)
    }

    fn table(cached_input: Option<f64>) -> PriceTable {
        PriceTable {
            models: BTreeMap::from([(
                "a".to_owned(),
                ModelPrice {
                    input: 2.5,
                    output: 10.0,
                    cached_input,
                },
            )]),
        }
    }

    #[test]
    fn a_call_costs_its_tokens_times_its_prices() {
        let cost = compute(&frame(), &table(Some(1.25)));
        let a = &cost.by_model["a"];
        assert_eq!((a.calls, a.prompt_tokens, a.cached_tokens), (2, 4000, 400));
        let expected = (3600.0 * 2.5 + 400.0 * 1.25 + 300.0 * 10.0) / 1e6;
        assert!(
            (a.cost - expected).abs() < 1e-12,
            "{} vs {expected}",
            a.cost
        );
        assert!((cost.total - expected).abs() < 1e-12);
        // Without a cached price the cached tokens cost the input price.
        let plain = compute(&frame(), &table(None));
        let expected = (4000.0 * 2.5 + 300.0 * 10.0) / 1e6;
        assert!((plain.total - expected).abs() < 1e-12);
    }

    #[test]
    fn an_unpriced_model_is_listed_and_its_requests_left_out() {
        let cost = compute(&frame(), &table(None));
        assert!(!cost.complete);
        assert_eq!(cost.unpriced_models["b"].calls, 1);
        assert!(!cost.by_model.contains_key("b"));
        assert_eq!((cost.per_request.n, cost.requests_unpriced), (2, 1));
        let per = per_request(&frame(), &table(None));
        assert_eq!(per[&2], None);
        assert!((per[&0].unwrap() - (1000.0 * 2.5 + 200.0 * 10.0) / 1e6).abs() < 1e-15);
    }

    #[test]
    fn negative_counts_cost_nothing() {
        let doc = json!([{"request_number": 0, "intermediate_steps": [
            {"payload": {"event_type": "LLM_END", "event_timestamp": 1.0, "name": "a", "UUID": "u",
                         "usage_info": {"token_usage": {"prompt_tokens": -1000,
                             "completion_tokens": -5, "cached_tokens": 3, "total_tokens": 0}}}}]}]);
        let cost = compute(
            &crate::profiler::testutil::frame_of_json(doc),
            &table(Some(1.0)),
        );
        assert_eq!(cost.total, 0.0);
        assert_eq!(cost.by_model["a"].cached_tokens, 0);
    }

    #[test]
    fn a_table_is_read_from_json_or_yaml() {
        let json = r#"{"models": {"a": {"input": 2.5, "output": 10, "cached_input": 1.25}}}"#;
        let yaml = "models:\n  a:\n    input: 2.5\n    output: 10\n    cached_input: 1.25\n";
        assert_eq!(PriceTable::parse(json).unwrap(), table(Some(1.25)));
        assert_eq!(PriceTable::parse(yaml).unwrap(), table(Some(1.25)));
        let typo = PriceTable::parse("models:\n  a: {input: 1, output: 2, cache: 3}\n");
        assert!(typo.unwrap_err().contains("unknown field `cache`"));
        let negative = PriceTable::parse(r#"{"models": {"a": {"input": -1, "output": 0}}}"#);
        assert!(negative.unwrap_err().starts_with("/models/a/input: "));
    }

    #[test]
    fn prices_must_be_finite_and_not_negative() {
        let mut t = table(Some(-1.0));
        assert_eq!(t.validate().unwrap_err().pointer, "/models/a/cached_input");
        t.models.insert(
            "x/y".to_owned(),
            ModelPrice {
                input: f64::NAN,
                output: 0.0,
                cached_input: None,
            },
        );
        assert_eq!(t.validate().unwrap_err().pointer, "/models/a/cached_input");
        t.models.remove("a");
        assert_eq!(t.validate().unwrap_err().pointer, "/models/x~1y/input");
        assert!(table(None).validate().is_ok());
    }
}
