#!/usr/bin/env python
"""Pydantic validation matrix for aiqtoolkit 1.1.0's IntermediateStep.

Run with the oracle venv:  /tmp/aiq/bin/python scripts/validation_matrix.py [--out PATH]

Each probe is a (small) step dict, validated exactly the way the reference ingests trace files
(IntermediateStep.model_validate on the json.load()-ed dict, i.e. pydantic *python* lax mode).
Output (default tests/fixtures/validation_matrix.json): a list of
  {"name", "input", "ok", "dump", "error_locs", "error_types", "nondeterministic"}
- dump: step.model_dump(mode="json") when ok (key order = pydantic's order), else null;
- error_locs: pydantic error locations as JSON pointers ("/payload/event_timestamp"; "" = the root);
- error_types: pydantic error type codes, parallel to error_locs;
- nondeterministic: payload keys whose value came from a non-deterministic default (UUID via uuid4,
  event_timestamp via time.time()); they are replaced by null in dump;
- nonfinite (only when present): JSON pointer -> Python repr ('nan', 'inf') of floats that pydantic's
  mode="json" dump wrote as null.
"""
import argparse
import copy
import json
import math
from pathlib import Path

from pydantic import ValidationError

from aiq.data_models.intermediate_step import IntermediateStep

U = "00000000-0000-4000-8000-000000000001"
TS = 1748779200.25
FA = {"function_name": "react_agent", "function_id": "f-1", "parent_id": "root", "parent_name": "root"}
MISSING = object()


def step(event_type="LLM_END", fa=MISSING, **payload):
    """Build a small probe step; UUID/event_timestamp are provided unless set to MISSING."""
    p = {"event_type": event_type, "event_timestamp": TS, "UUID": U}
    for k, v in payload.items():
        p[k] = v
    p = {k: v for k, v in p.items() if v is not MISSING}
    if p.get("event_type") is MISSING:
        p.pop("event_type")
    d = {"function_ancestry": copy.deepcopy(FA) if fa is MISSING else fa, "payload": p}
    if fa is None:
        d["function_ancestry"] = None
    return d


def without_fa(d):
    d = copy.deepcopy(d)
    d.pop("function_ancestry", None)
    return d


def build_probes():
    P = []

    def add(name, inp):
        P.append((name, inp))

    # ---- event_type -------------------------------------------------------------------------
    for et in ["LLM_START", "LLM_END", "LLM_NEW_TOKEN", "TOOL_START", "TOOL_END", "WORKFLOW_START",
               "WORKFLOW_END", "TASK_START", "TASK_END", "FUNCTION_START", "FUNCTION_END", "CUSTOM_START",
               "CUSTOM_END", "SPAN_START", "SPAN_CHUNK", "SPAN_END"]:
        add(f"event_type/{et}", step(et))
    add("event_type/lowercase", step("llm_end"))
    add("event_type/leading_space", step(" LLM_END"))
    add("event_type/TTC_START_nat_only", step("TTC_START"))
    add("event_type/int_1", step(1))
    add("event_type/null", step(None))
    add("event_type/missing", step(MISSING))

    # ---- event_timestamp --------------------------------------------------------------------
    for name, v in [("int", 1748779200), ("float", 12.5), ("negative", -1.5), ("zero", 0),
                    ("str_12.5", "12.5"), ("str_padded", " 12.5 "), ("str_1e3", "1e3"), ("str_1_000", "1_000"),
                    ("str_int", "17"), ("str_nan", "nan"), ("str_inf", "inf"), ("str_hex", "0x10"),
                    ("str_empty", ""), ("bool_true", True), ("bool_false", False), ("str_abc", "abc"),
                    ("null", None), ("list", [1.0]), ("dict", {"t": 1}), ("huge_int", 10 ** 30)]:
        add(f"event_timestamp/{name}", step("LLM_END", event_timestamp=v))
    add("event_timestamp/missing", step("LLM_END", event_timestamp=MISSING))

    # ---- span_event_timestamp ---------------------------------------------------------------
    add("span_event_timestamp/on_END", step("LLM_END", span_event_timestamp=TS - 1.0))
    add("span_event_timestamp/on_TOOL_END_int", step("TOOL_END", span_event_timestamp=1748779199))
    add("span_event_timestamp/on_START", step("LLM_START", span_event_timestamp=TS - 1.0))
    add("span_event_timestamp/on_CHUNK", step("LLM_NEW_TOKEN", span_event_timestamp=TS - 1.0))
    add("span_event_timestamp/on_SPAN_CHUNK", step("SPAN_CHUNK", span_event_timestamp=TS - 1.0))
    add("span_event_timestamp/null_on_START", step("LLM_START", span_event_timestamp=None))
    add("span_event_timestamp/str_on_END", step("LLM_END", span_event_timestamp="1748779199.5"))
    add("span_event_timestamp/str_abc_on_END", step("LLM_END", span_event_timestamp="abc"))
    add("span_event_timestamp/str_on_START", step("LLM_START", span_event_timestamp="1748779199.5"))
    add("span_event_timestamp/greater_than_event_ts", step("LLM_END", span_event_timestamp=TS + 5.0))

    # ---- framework ----------------------------------------------------------------------------
    for v in ["langchain", "llama_index", "crewai", "semantic_kernel", "agno"]:
        add(f"framework/{v}", step("LLM_END", framework=v))
    add("framework/LangChain_case", step("LLM_END", framework="LangChain"))
    add("framework/unknown", step("LLM_END", framework="autogen"))
    add("framework/null", step("LLM_END", framework=None))
    add("framework/int", step("LLM_END", framework=1))

    # ---- name ---------------------------------------------------------------------------------
    add("name/str", step("LLM_END", name="meta/llama-3.1-70b-instruct"))
    add("name/int", step("LLM_END", name=42))
    add("name/float", step("LLM_END", name=4.2))
    add("name/null", step("LLM_END", name=None))
    add("name/unicode_and_nul", step("LLM_END", name="wiki_s\u00e9arch_\U0001F600_\u0000end"))

    # ---- tags ---------------------------------------------------------------------------------
    add("tags/list_str", step("LLM_END", tags=["a", "b"]))
    add("tags/empty_list", step("LLM_END", tags=[]))
    add("tags/str", step("LLM_END", tags="a"))
    add("tags/list_int", step("LLM_END", tags=[1]))
    add("tags/null", step("LLM_END", tags=None))
    add("tags/tuple_like_dict", step("LLM_END", tags={"a": 1}))

    # ---- metadata -----------------------------------------------------------------------------
    add("metadata/dict_trace_keys", step("LLM_END", metadata={"chat_responses": [{"text": "x"}], "tool_info": None}))
    add("metadata/dict_arbitrary", step("LLM_END", metadata={"zzz": 1, "chat_inputs": ["q"]}))
    add("metadata/empty_dict", step("LLM_END", metadata={}))
    add("metadata/dict_int_keys_not_possible_in_json_but_nonstr_value", step("LLM_END", metadata={"a": [1, {"b": None}]}))
    add("metadata/list", step("LLM_END", metadata=[1, 2]))
    add("metadata/str", step("LLM_END", metadata="x"))
    add("metadata/null", step("LLM_END", metadata=None))

    # ---- data ---------------------------------------------------------------------------------
    add("data/io", step("LLM_END", data={"input": "q", "output": "a"}))
    add("data/extra_keys", step("LLM_END", data={"zzz": 1, "output": "a", "aaa": [2], "input": "q"}))
    add("data/empty", step("LLM_END", data={}))
    add("data/list", step("LLM_END", data=["q"]))
    add("data/str", step("LLM_END", data="q"))
    add("data/null", step("LLM_END", data=None))
    add("data/input_chat_list", step("LLM_START", data={"input": [{"type": "human", "content": "hi"}]}))
    add("data/input_unicode_nul", step("LLM_START", data={"input": "caf\u00e9 \u2603 \U0001F600 a\u0000b \"q\"\n"}))
    add("data/chunk_number", step("LLM_NEW_TOKEN", data={"chunk": 3.5}))

    # ---- usage_info ---------------------------------------------------------------------------
    def tu(**kw):
        return {"token_usage": kw}

    add("usage_info/ints", step("LLM_END", usage_info={"token_usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                                                       "total_tokens": 15},
                                                       "num_llm_calls": 1, "seconds_between_calls": 0}))
    add("usage_info/empty", step("LLM_END", usage_info={}))
    add("usage_info/token_usage_empty", step("LLM_END", usage_info=tu()))
    add("usage_info/token_usage_null", step("LLM_END", usage_info={"token_usage": None}))
    add("usage_info/null", step("LLM_END", usage_info=None))
    add("usage_info/prompt_integral_float_7.0", step("LLM_END", usage_info=tu(prompt_tokens=7.0)))
    add("usage_info/prompt_float_1.5", step("LLM_END", usage_info=tu(prompt_tokens=1.5)))
    add("usage_info/prompt_str_7", step("LLM_END", usage_info=tu(prompt_tokens="7")))
    add("usage_info/prompt_str_7.0", step("LLM_END", usage_info=tu(prompt_tokens="7.0")))
    add("usage_info/prompt_str_7.5", step("LLM_END", usage_info=tu(prompt_tokens="7.5")))
    add("usage_info/prompt_str_padded", step("LLM_END", usage_info=tu(prompt_tokens=" 7 ")))
    add("usage_info/prompt_bool_true", step("LLM_END", usage_info=tu(prompt_tokens=True)))
    add("usage_info/prompt_null", step("LLM_END", usage_info=tu(prompt_tokens=None)))
    add("usage_info/prompt_negative", step("LLM_END", usage_info=tu(prompt_tokens=-3)))
    add("usage_info/prompt_1e3_float", step("LLM_END", usage_info=tu(prompt_tokens=1e3)))
    add("usage_info/prompt_huge_int", step("LLM_END", usage_info=tu(prompt_tokens=2 ** 70)))
    add("usage_info/total_inconsistent", step("LLM_END", usage_info=tu(prompt_tokens=1, completion_tokens=2,
                                                                        total_tokens=100)))
    add("usage_info/extra_cached_tokens", step("LLM_END", usage_info=tu(prompt_tokens=3, cached_tokens=2,
                                                                         reasoning_tokens=1)))
    add("usage_info/extra_top_key", step("LLM_END", usage_info={"zzz": 1, "num_llm_calls": 1}))
    add("usage_info/num_llm_calls_2.0", step("LLM_END", usage_info={"num_llm_calls": 2.0}))
    add("usage_info/num_llm_calls_str_3", step("LLM_END", usage_info={"num_llm_calls": "3"}))
    add("usage_info/seconds_between_calls_2.0", step("LLM_END", usage_info={"seconds_between_calls": 2.0}))
    add("usage_info/seconds_between_calls_str_3", step("LLM_END", usage_info={"seconds_between_calls": "3"}))
    add("usage_info/seconds_between_calls_0.5", step("LLM_END", usage_info={"seconds_between_calls": 0.5}))
    add("usage_info/list", step("LLM_END", usage_info=[1]))
    add("usage_info/on_LLM_START", step("LLM_START", usage_info=tu(prompt_tokens=4)))

    # ---- function_ancestry --------------------------------------------------------------------
    add("function_ancestry/missing", without_fa(step("LLM_END")))
    add("function_ancestry/null", step("LLM_END", fa=None))
    add("function_ancestry/minimal", step("LLM_END", fa={"function_name": "f", "function_id": "id"}))
    add("function_ancestry/missing_function_name", step("LLM_END", fa={"function_id": "id"}))
    add("function_ancestry/missing_both", step("LLM_END", fa={}))
    add("function_ancestry/extra_key", step("LLM_END", fa={"function_name": "f", "function_id": "id", "zzz": 1}))
    add("function_ancestry/parent_id_int", step("LLM_END", fa={"function_name": "f", "function_id": "id",
                                                                "parent_id": 5}))
    add("function_ancestry/function_id_int", step("LLM_END", fa={"function_name": "f", "function_id": 7}))
    add("function_ancestry/str", step("LLM_END", fa="root"))

    # ---- top level / payload shape ------------------------------------------------------------
    d = step("LLM_END"); d["parent_id"] = "root"
    add("top_level/extra_parent_id_nat", d)
    d = step("LLM_END"); d["zzz"] = 1
    add("top_level/extra_zzz", d)
    add("top_level/payload_missing", {"function_ancestry": copy.deepcopy(FA)})
    add("top_level/payload_str", {"function_ancestry": copy.deepcopy(FA), "payload": "LLM_END"})
    add("top_level/payload_list", {"function_ancestry": copy.deepcopy(FA), "payload": []})
    add("top_level/payload_null", {"function_ancestry": copy.deepcopy(FA), "payload": None})
    add("top_level/payload_empty_object", {"function_ancestry": copy.deepcopy(FA), "payload": {}})
    add("top_level/step_is_list", [])
    add("top_level/step_is_str", "LLM_END")
    add("top_level/payload_first_key_order", {"payload": {"UUID": U, "event_timestamp": TS, "event_type": "LLM_END"},
                                              "function_ancestry": copy.deepcopy(FA)})
    add("top_level/multiple_errors", {"function_ancestry": {"function_id": 1}, "payload": {
        "event_type": "nope", "event_timestamp": "abc", "tags": "x", "UUID": None}, "zzz": 0})

    # ---- UUID ---------------------------------------------------------------------------------
    add("UUID/missing", step("LLM_END", UUID=MISSING))
    add("UUID/missing_and_no_timestamp", step("LLM_END", UUID=MISSING, event_timestamp=MISSING))
    add("UUID/int", step("LLM_END", UUID=123))
    add("UUID/null", step("LLM_END", UUID=None))
    add("UUID/empty_str", step("LLM_END", UUID=""))
    add("UUID/not_a_uuid", step("LLM_END", UUID="req-1/llm#2"))

    # ---- payload extras & key order -----------------------------------------------------------
    add("payload/extra_keys_unusual_order", {"function_ancestry": copy.deepcopy(FA), "payload": {
        "zeta": 1, "UUID": U, "data": {"output": "o", "zz": 0, "input": "i"}, "alpha": {"b": 2, "a": 1},
        "event_timestamp": TS, "name": "n", "event_type": "TOOL_END", "parent_id": "p", "mid": None}})
    add("payload/extra_event_state_category", step("LLM_END", event_state="END", event_category="LLM"))
    return P


def pointer(loc) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def sanitize_json(o):
    """NaN/inf are not JSON; pydantic's mode='json' dump already maps them to null, keep a guard anyway."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: sanitize_json(v) for k, v in o.items()}
    if isinstance(o, list):
        return [sanitize_json(v) for v in o]
    return o


def find_nonfinite(o, ptr, acc):
    if isinstance(o, float) and not math.isfinite(o):
        acc[ptr] = repr(o)
    elif isinstance(o, dict):
        for k, v in o.items():
            find_nonfinite(v, ptr + pointer([k]), acc)
    elif isinstance(o, list):
        for i, v in enumerate(o):
            find_nonfinite(v, ptr + pointer([i]), acc)


def run_probe(name, inp):
    rec = {"name": name, "input": inp, "ok": False, "dump": None, "error_locs": [], "error_types": [],
           "nondeterministic": []}
    try:
        s = IntermediateStep.model_validate(copy.deepcopy(inp))
    except ValidationError as e:
        errs = e.errors()
        rec["error_locs"] = [pointer(x["loc"]) for x in errs]
        rec["error_types"] = [x["type"] for x in errs]
        return rec
    rec["ok"] = True
    dump = s.model_dump(mode="json")
    given = inp.get("payload") if isinstance(inp, dict) else None
    given = given if isinstance(given, dict) else {}
    for key in ("UUID", "event_timestamp"):
        if key not in given:
            rec["nondeterministic"].append(key)
            dump["payload"][key] = None
    rec["dump"] = sanitize_json(dump)
    nonfinite = {}
    find_nonfinite(s.model_dump(), "", nonfinite)
    if nonfinite:
        rec["nonfinite"] = nonfinite  # pointer -> Python repr of the value that mode="json" dumped as null
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures/validation_matrix.json"))
    a = ap.parse_args()
    probes = build_probes()
    names = [n for n, _ in probes]
    assert len(names) == len(set(names)), "duplicate probe names"
    out = [run_probe(n, i) for n, i in probes]
    Path(a.out).write_text(json.dumps(out, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    print(f"{len(out)} probes ({sum(r['ok'] for r in out)} ok) -> {a.out}")


if __name__ == "__main__":
    main()
