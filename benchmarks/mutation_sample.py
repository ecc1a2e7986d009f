"""Mutation testing on a bounded random sample of mutmut's mutants.

``mutmut run`` tests every mutant with the whole suite, which on the 2-core reference
machine takes days for ``perf/``, ``carbon.py`` and ``search.py`` (~2,000 mutants x ~2 min).
This script uses mutmut's own mutation operators (``mutmut.list_mutations`` /
``mutmut.mutate``, mutmut 2.5), draws ``--sample`` mutants uniformly (seeded) from all
mutants of the given files, applies each in place, runs the tests that exercise those
modules (``-x``: stop at the first failure) with a time limit, and restores the file. A
mutant is *killed* when the tests fail or time out, *survived* when they pass.

    python benchmarks/mutation_sample.py --sample 40 --seed 13 --out /tmp/mutants.json

Run it from a copy of the repository (``git archive HEAD | tar -x -C /tmp/mut``) to keep
editing the working tree meanwhile: the copy's ``src`` is put first on ``PYTHONPATH``.

The JSON lists every sampled mutant (file, line, the mutated line, outcome), so the
survivors can be read and the ones that matter turned into tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from mutmut import Context, RelativeMutationID, list_mutations, mutate

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src/carbonscaling/perf").glob("*.py")
               if p.name != "__init__.py") + ["src/carbonscaling/carbon.py", "src/carbonscaling/search.py"]
TESTS = ["tests/test_perf.py", "tests/test_search.py", "tests/test_carbon.py", "tests/test_energy.py",
         "tests/test_kernels_hw.py", "tests/test_layout_megatron.py", "tests/test_fuzz.py",
         "tests/test_validation_ours.py", "tests/test_bad_numbers.py"]


def all_mutants(files: list[str]) -> list[tuple[str, RelativeMutationID]]:
    out = []
    for f in files:
        src = (ROOT / f).read_text(encoding="utf-8")
        out += [(f, m) for m in list_mutations(Context(source=src, filename=f))]
    return out


def mutated_source(f: str, mid: RelativeMutationID) -> str:
    ctx = Context(source=(ROOT / f).read_text(encoding="utf-8"), filename=f, mutation_id=mid)
    new, n = mutate(ctx)
    assert n == 1, (f, mid, n)
    return new


def run_tests(tests: list[str], timeout_s: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this tree's package, also from a copy
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0",
                            *tests], cwd=ROOT, capture_output=True, timeout=timeout_s, env=env)
        outcome = "survived" if r.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        outcome = "killed (timeout)"
    return outcome, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--files", nargs="*", default=FILES)
    ap.add_argument("--tests", nargs="*", default=TESTS)
    ap.add_argument("--out", default="mutants.json")
    ap.add_argument("--only", nargs="*", default=None, help="file:line:index of mutants to (re)run")
    a = ap.parse_args()
    everything = all_mutants(a.files)
    if a.only:
        keys = set(a.only)
        picked = [(f, m) for f, m in everything if f"{f}:{m.line_number}:{m.index}" in keys]
    else:
        picked = random.Random(a.seed).sample(everything, min(a.sample, len(everything)))
    print(f"{len(everything)} mutants in {len(a.files)} files; testing {len(picked)}", flush=True)
    results = []
    for i, (f, mid) in enumerate(picked, 1):
        path = ROOT / f
        original = path.read_text(encoding="utf-8")
        new = mutated_source(f, mid)
        line = new.splitlines()[mid.line_number] if mid.line_number < len(new.splitlines()) else ""
        try:
            path.write_text(new, encoding="utf-8")
            outcome, secs = run_tests(a.tests, a.timeout)
        finally:
            path.write_text(original, encoding="utf-8")
        rec = {"file": f, "line": mid.line_number + 1, "index": mid.index, "original": mid.line.strip(),
               "mutated": line.strip(), "outcome": outcome, "seconds": round(secs, 1)}
        results.append(rec)
        print(f"[{i}/{len(picked)}] {outcome:16s} {f}:{rec['line']}  {rec['original'][:70]!r} -> "
              f"{rec['mutated'][:70]!r} ({secs:.0f} s)", flush=True)
        Path(a.out).write_text(json.dumps({"total_mutants": len(everything), "files": a.files, "tests": a.tests,
                                           "seed": a.seed, "results": results}, indent=1), encoding="utf-8")
    killed = sum(r["outcome"] != "survived" for r in results)
    print(f"score: {killed}/{len(results)} killed = {killed / max(1, len(results)):.0%}")


if __name__ == "__main__":
    main()
