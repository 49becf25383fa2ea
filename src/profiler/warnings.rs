//! What a run's outputs can and cannot tell, in words for the run's view, the ingest response and
//! `agentprof analyze`: where the steps or the settings make agentprof's numbers differ from
//! what the toolkit showed, and what to change.

use super::{Dialect, Frame, ProfilerConfig};

/// What the warnings need to know about a run's steps; the store keeps these per run, so the view
/// needs no pass over the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepFacts {
    pub requests: u64,
    pub steps: u64,
    /// Whether every step is an LLM_END or a TOOL_END.
    pub only_llm_tool_ends: bool,
}

impl StepFacts {
    pub fn of_frame(frame: &Frame) -> StepFacts {
        StepFacts {
            requests: frame.requests.len() as u64,
            steps: frame.rows().len() as u64,
            only_llm_tool_ends: frame
                .rows()
                .iter()
                .all(|r| r.event_type().kept_by_default_eval_filter()),
        }
    }
}

pub fn of_run(facts: &StepFacts, config: &ProfilerConfig, dialect: Dialect) -> Vec<String> {
    let mut out = Vec::new();
    if facts.steps > 0 && facts.only_llm_tool_ends {
        out.push(
            "every step is an LLM_END or a TOOL_END, as in a workflow_output.json written with nat \
             eval's default workflow_output_step_filter: without the START, WORKFLOW and FUNCTION \
             steps, run times, LLM latencies, nesting and concurrency come out different from the \
             profile the toolkit made in memory. To get its numbers, set \
             eval.general.output.workflow_output_step_filter to every event type in the eval \
             config (or post the profiler's all_requests_profiler_traces.json)"
                .to_owned(),
        );
    }
    let ps = &config.prefix_span_analysis;
    if ps.enable && ps.min_support.from_user && ps.min_support.value >= 1.0 {
        let v = ps.min_support.value;
        let n = facts.requests;
        // The toolkit reads a validated number as a fraction: max(1, round(v * n)) requests.
        let needed = ((v * n as f64).round_ties_even() as u64).max(1);
        let toolkit = if needed > n {
            format!(
                "it reads a configured number as a fraction of the requests and would have \
                 needed {needed} of {n}, so it would have found no patterns"
            )
        } else {
            format!(
                "it reads a configured number as a fraction of the requests and would have \
                 needed {needed} of {n}"
            )
        };
        out.push(format!(
            "prefix_span_analysis.min_support = {} was read as a count of requests (a pattern \
             must occur in at least {} of them); the toolkit would not: {toolkit} \
             (docs/deviations.md#d7)",
            ps.min_support.python_repr(),
            // A pattern is kept when its support is not below the setting.
            v.ceil() as u64,
        ));
    }
    // aiqtoolkit 1.1 has no dynamo_metrics key to leave null.
    if config.dynamo_metrics.enable && dialect == Dialect::Nat19 {
        out.push(
            "dynamo_metrics.enable is set, but agentprof does not query Prometheus: dynamo_metrics \
             stays null, as the toolkit writes it when collection fails"
                .to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_warning_has_its_cause() {
        let facts = StepFacts {
            requests: 12,
            steps: 40,
            only_llm_tool_ends: true,
        };
        let config = ProfilerConfig::from_json(json!({
            "prefix_span_analysis": {"min_support": 2},
            "dynamo_metrics": {"enable": true}
        }))
        .unwrap();
        let w = of_run(&facts, &config, Dialect::Nat19);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("workflow_output_step_filter"));
        assert!(
            w[1].contains("min_support = 2.0") && w[1].contains("needed 24 of 12"),
            "{}",
            w[1]
        );
        assert!(w[2].contains("dynamo_metrics"));
        let aiq = of_run(&facts, &config, Dialect::Aiq11);
        assert_eq!(aiq.len(), 2, "no dynamo_metrics in aiq-1.1: {aiq:?}");
        let fractional = ProfilerConfig::from_json(json!({
            "prefix_span_analysis": {"min_support": 2.4}
        }))
        .unwrap();
        let w = of_run(&facts, &fractional, Dialect::Nat19);
        assert!(w[1].contains("at least 3 of them"), "{}", w[1]);
        let quiet = of_run(
            &StepFacts {
                only_llm_tool_ends: false,
                ..facts
            },
            &ProfilerConfig::default(),
            Dialect::Nat19,
        );
        assert!(quiet.is_empty(), "{quiet:?}");
    }
}
