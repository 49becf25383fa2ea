//! The forecast trains on exactly the reference's windows (dumped from the toolkit's own
//! `RandomForestModel._prep_for_model_training` by `scripts/forecast_reference.py`), and its
//! in-sample error is in the range scikit-learn's forest reaches on the same data.

mod common;

use agentprof::profiler::Frame;
use agentprof::profiler::toolkit::forecast::{self, Forecast};
use agentprof::trace::{ParseOptions, parse};
use common::*;
use serde_json::Value;

#[test]
fn windows_and_error_match_the_reference() {
    for case in ["small_5", "medium_50"] {
        let reference: Value = serde_json::from_slice(
            &std::fs::read(fixtures().join(format!("forecast/{case}.json"))).unwrap(),
        )
        .unwrap();
        let frame = Frame::from_batch(
            parse(
                &case_input(&fixtures().join("cases").join(case)),
                &ParseOptions::default(),
            )
            .unwrap(),
        );
        let set = forecast::training_set(&frame).unwrap();
        assert_eq!(
            set.matrix_length as u64,
            reference["matrix_length"].as_u64().unwrap(),
            "{case}"
        );
        let as_rows = |v: &Value| -> Vec<Vec<f64>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect()
        };
        assert_eq!(set.x, as_rows(&reference["x"]), "{case}: X windows");
        assert_eq!(set.y, as_rows(&reference["y"]), "{case}: Y windows");

        let Forecast::Fitted(fit) = forecast::fit(&frame) else {
            panic!("{case}: not fitted")
        };
        let sklearn: Vec<f64> = reference["sklearn_mae"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (lo, hi) = sklearn
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                (l.min(*x), h.max(*x))
            });
        assert!(
            fit.in_sample_mae >= lo * 0.9 && fit.in_sample_mae <= hi * 1.1,
            "{case}: our in-sample MAE {} vs scikit-learn's {lo}..{hi} over seeds",
            fit.in_sample_mae
        );
    }
}
