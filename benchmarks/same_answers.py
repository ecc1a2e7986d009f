"""Do two trees give the same answers? Speed work must not change a number.

    python benchmarks/same_answers.py dump OUT.json      # answers of the tree on PYTHONPATH
    python benchmarks/same_answers.py compare A.json B.json [--rtol 1e-12]
    python benchmarks/same_answers.py paper DIR_A DIR_B     # two `carbonscaling paper --out` folders

``dump`` runs `carbonscaling.estimate(...).to_dict()` for every catalog model on a few
devices, plus pinned, carbon-objective, cs-v1 preset and infeasible requests (the error
line and its constraint), and writes them as JSON. ``compare`` reports every value that
differs by more than ``rtol`` (relative). ``layouts_evaluated`` is a count of work done,
not an answer, and is ignored. ``paper`` compares every CSV cell of two paper outputs (claims
included) the same way, ignoring the timing columns (``search_s``, ``seconds``) too.
"""

from __future__ import annotations

import json
import math
import sys

IGNORED = {"layouts_evaluated", "search_s", "seconds"}


def cases():
    from carbonscaling.scaling import model_names

    for m in model_names():
        for d in ("H100", "A100-80GB", "B200"):
            yield f"{m}@{d}", {"model": m, "device": d}
    for m in ("llama3.1-70b", "mixtral-8x7b", "deepseek-v3"):
        yield f"{m}@H100 carbon", {"model": m, "device": "H100", "objective": "carbon"}
        yield f"{m}@H100 30d fp8", {"model": m, "device": "H100", "deadline_days": 30, "precision": "fp8"}
    yield "405b pinned", {"model": "llama3.1-405b", "device": "H100", "tp": 8, "pp": 16, "devices": 16384}
    yield "70b pinned dp", {"model": "llama3.1-70b", "device": "H100", "tp": 8, "dp": 16}
    yield "bloom 1d", {"model": "bloom-176b", "device": "A100-80GB", "deadline_days": 1}
    for d_model in (4096, 12288, 49152):
        yield f"cs-v1 {d_model} B100", {"preset": "cs-v1", "d_model": d_model, "device": "B100",
                                          "ep_convention": "cs-v1"}
    yield "cs-v2 8192 H100", {"preset": "cs-v2", "d_model": 8192, "device": "H100"}
    yield "cs-v1 98304 infeasible", {"preset": "cs-v1", "d_model": 98304, "device": "B100"}
    for m, d, days in (("llama3.1-405b", "V100", 5), ("mixtral-8x7b", "H100", 0.5), ("deepseek-v3", "A100-80GB", 3),
                       ("llama3.1-70b", "H100", 2), ("gpt3-175b", "A100-80GB", 4), ("palm-540b", "V100", 30)):
        yield f"{m}@{d} {days}d", {"model": m, "device": d, "deadline_days": days}
    yield "405b 8 devices", {"model": "llama3.1-405b", "device": "H100", "devices": 8}
    yield "70b 7 devices", {"model": "llama3.1-70b", "device": "H100", "devices": 7}
    yield "70b 64 devices tp8", {"model": "llama3.1-70b", "device": "H100", "devices": 64, "tp": 8}
    yield "8b gb pinned", {"model": "llama3.1-8b", "device": "H100", "global_batch": 512, "deadline_days": 10}
    yield "70b fsdp", {"model": "llama3.1-70b", "device": "H100", "dp": 32, "fsdp": 8}


def dump(path: str) -> None:
    import carbonscaling as cs
    from carbonscaling.errors import CarbonScalingError

    out = {}
    for name, kw in cases():
        try:
            out[name] = cs.estimate(**kw).to_dict()
        except CarbonScalingError as err:
            out[name] = {"error": type(err).__name__, "text": str(err),
                         "constraint": getattr(err, "constraint", None), "details": getattr(err, "details", None)}
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=str)


def diffs(a, b, rtol, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in IGNORED:
                continue
            if k not in a or k not in b:
                yield f"{where}/{k}: only in {'B' if k not in a else 'A'}"
            else:
                yield from diffs(a[k], b[k], rtol, f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diffs(x, y, rtol, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        if not (a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))):
            yield f"{where}: {a!r} != {b!r}"
    elif a != b:
        yield f"{where}: {a!r} != {b!r}"


def compare(pa: str, pb: str, rtol: float) -> int:
    a, b = json.load(open(pa)), json.load(open(pb))
    bad = list(diffs(a, b, rtol))
    print("\n".join(bad[:200]))
    print(f"{len(a)} cases, {len(bad)} differences (rtol {rtol:g})")
    return 1 if bad else 0


def _cell(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def compare_paper(da: str, db: str, rtol: float) -> int:
    import csv
    from pathlib import Path

    def read(d):
        return {str(p.relative_to(d)): [{k: _cell(v) for k, v in r.items()} for r in csv.DictReader(open(p))]
                for p in sorted(Path(d).rglob("*.csv"))}

    a, b = read(da), read(db)
    bad = list(diffs(a, b, rtol))
    print("\n".join(bad[:200]))
    print(f"{len(a)} CSV files, {sum(map(len, a.values()))} rows, {len(bad)} differences (rtol {rtol:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "paper":
        rtol = float(sys.argv[sys.argv.index("--rtol") + 1]) if "--rtol" in sys.argv else 1e-12
        sys.exit(compare_paper(sys.argv[2], sys.argv[3], rtol))
    if sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        rtol = float(sys.argv[sys.argv.index("--rtol") + 1]) if "--rtol" in sys.argv else 1e-12
        sys.exit(compare(sys.argv[2], sys.argv[3], rtol))
