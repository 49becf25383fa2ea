#!/usr/bin/env python3
"""Reference training windows and scikit-learn's in-sample error for the token-usage forecast.

Runs with the oracle's virtualenv (aiqtoolkit 1.1.0, scikit-learn 1.9.1):
    /tmp/aiq/bin/python scripts/forecast_reference.py INPUT.json[.gz] OUT.json [--seeds 0 1 2 ...]

Builds the windows with the toolkit's own RandomForestModel._prep_for_model_training (the code
path ProfilerRunner uses), fits RandomForestRegressor(n_estimators=3, max_depth=2) under numpy
seeds (the toolkit sets no random_state), and writes {matrix_length, x, y, sklearn_mae: {seed: mae}}.
"""
import argparse, gzip, json
import numpy as np


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    a = ap.parse_args()
    from aiq.data_models.intermediate_step import IntermediateStep
    from aiq.profiler.intermediate_property_adapter import IntermediatePropertyAdaptor
    from aiq.profiler.forecasting.models.random_forest_regressor import RandomForestModel
    doc = load(a.input)
    reqs = [r["intermediate_steps"] if isinstance(r, dict) else r for r in doc]
    steps = [[IntermediatePropertyAdaptor.from_intermediate_step(IntermediateStep.model_validate(s)) for s in req] for req in reqs]
    model = RandomForestModel()
    x, y = model._prep_for_model_training(steps)
    maes = {}
    for seed in a.seeds:
        np.random.seed(seed)
        m = RandomForestModel()
        m.fit(steps)
        maes[str(seed)] = float(np.mean(np.abs(m.model.predict(x) - y)))
    json.dump({"matrix_length": model.matrix_length, "x": x.tolist(), "y": y.tolist(), "sklearn_mae": maes}, open(a.out, "w"))
    print(f"matrix_length={model.matrix_length} samples={len(x)} sklearn in-sample MAE by seed: {maes}")


if __name__ == "__main__":
    main()
