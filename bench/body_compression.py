"""How small a stored step body gets with zstd, alone and with a trained dictionary.

Issue 27 asks for at most 500 bytes of database per step; a step's JSON body is most of what a
row holds today (docs/scaling.md). This measures the lever before building it: each real
nvidia-nat step of the test fixtures' `realnat_*` cases, as compact JSON, compressed one step at a
time (a row is compressed alone), with dictionaries trained on every case but the held-out one.

Usage: python3 bench/body_compression.py [HELD_OUT_CASE]   (default realnat_react_12)
Needs the `zstandard` package (pip install zstandard).
"""

from __future__ import annotations

import gzip
import json
import pathlib
import statistics
import sys

import zstandard

CASES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cases"


def steps_of(case: pathlib.Path) -> list[bytes]:
    """Each step of a case's input, as compact JSON."""
    raw = next(case.glob("input.json*")).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    out = []
    for request in json.loads(raw):
        steps = request["intermediate_steps"] if isinstance(request, dict) else request
        out.extend(json.dumps(s, separators=(",", ":")).encode() for s in steps)
    return out


def main() -> None:
    held_out = sys.argv[1] if len(sys.argv) > 1 else "realnat_react_12"
    cases = sorted(c for c in CASES.iterdir() if c.name.startswith("realnat_"))
    train = [s for c in cases if c.name != held_out for s in steps_of(c)]
    test = steps_of(CASES / held_out)
    raw = statistics.mean(map(len, test))
    print(f"{len(train)} training steps; held out {held_out}: {len(test)} steps, {raw:.0f} B each as JSON")
    print("| dictionary | level | bytes per step | ratio |")
    print("|---:|---:|---:|---:|")
    for size in (0, 4096, 16384, 65536):
        params = {"dict_data": zstandard.train_dictionary(size, train)} if size else {}
        for level in (3, 9, 19):
            zc = zstandard.ZstdCompressor(level=level, **params)
            per = statistics.mean(len(zc.compress(s)) for s in test)
            print(f"| {size or 'none'} | {level} | {per:.1f} | {raw / per:.1f} |")


if __name__ == "__main__":
    main()
