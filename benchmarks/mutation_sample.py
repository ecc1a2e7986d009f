"""Mutation testing on a seeded, stratified sample of mutmut's mutants, with targeted tests.

``mutmut run`` tests every mutant with the whole suite: on the 2-core reference machine that
is days for ``perf/``, ``carbon.py`` and ``search.py`` (~3,700 mutants). This script keeps
mutmut 2.5.1's own mutation operators (``mutmut.list_mutations`` / ``mutmut.mutate``) and
makes each mutant cheap:

1. ``map``: one run of the test suite under coverage with per-test contexts
   (``pytest-cov --cov-context=test``) records which tests execute each line of the mutated
   files, and each test's duration.
2. ``run``: draws a seeded sample stratified by file (proportional allocation, largest
   remainder, at least ``--min-per-file`` each), applies each mutant in place, and runs only
   the tests that execute the mutated line (fastest first up to ``--budget`` seconds of their
   measured time, ``-x -n 0 -p no:randomly``, a time limit of ``3 x`` that + 30 s) under ``nice``; lines that run only at import
   (module constants, signatures, defaults) get the tests of the file in ``FILE_TESTS``.
   A mutant is *killed* when the tests fail or time out, *survived* when they pass, and
   *survived (no test)* when no test executes its line. One mutant at a time; the file is
   restored after each.

Run it in a copy of a fixed commit so the working tree can change meanwhile::

    git archive main | tar -x -C /tmp/mut && cd /tmp/mut
    nice -n 10 python benchmarks/mutation_sample.py map --out /tmp/mut-map.json
    nice -n 10 python benchmarks/mutation_sample.py run --map /tmp/mut-map.json \\
        --sample 80 --seed 15 --out /tmp/mut-seed15.json
    python benchmarks/mutation_sample.py score /tmp/mut-seed15.json

The same ``--seed`` on the same source files draws the same mutants, so a "before" and an
"after" (new tests, same sources) compare like with like. ``score`` prints the killed share
with its exact (Clopper-Pearson) 95 % binomial interval, per file, and the survivors.
Needs the ``mutation`` extra (mutmut 2.5.1, pytest-cov).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "src/carbonscaling"
FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / PKG / "perf").glob("*.py")
               if p.name != "__init__.py") + [f"{PKG}/carbon.py", f"{PKG}/search.py"]
_PERF = ["tests/test_perf.py", "tests/test_kernels_hw.py", "tests/test_layout_megatron.py",
         "tests/test_hybrid.py", "tests/test_perf_hand.py", "tests/test_step_hand.py"]
# Tests of each file for lines that only run at import (constants, signatures, defaults).
FILE_TESTS = {f: _PERF for f in FILES}
FILE_TESTS[f"{PKG}/perf/moe.py"] = _PERF + ["tests/test_moe_hand.py"]
FILE_TESTS[f"{PKG}/carbon.py"] = ["tests/test_carbon.py", "tests/test_energy.py", "tests/test_carbon_hand.py"]
FILE_TESTS[f"{PKG}/search.py"] = ["tests/test_search.py", "tests/test_layout_megatron.py",
                                  "tests/test_search_hand.py"]


# ----------------------------------------------------------------------------- map
def build_map(tests: list[str], out: Path, workers: int) -> None:
    """Run ``tests`` under coverage with per-test contexts; write line -> tests and durations."""
    work = out.with_suffix(".d")
    work.mkdir(parents=True, exist_ok=True)
    cov_file, junit = work / ".coverage", work / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COVERAGE_FILE": str(cov_file)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-n", str(workers), f"--cov={ROOT / PKG}", "--cov-context=test", "--cov-report=",
           f"--junitxml={junit}", *tests]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env)
    print(f"map run: exit {r.returncode}, {time.perf_counter() - t0:.0f} s", flush=True)
    import coverage  # only the map step needs it

    data = coverage.CoverageData(basename=str(cov_file))
    data.read()
    lines: dict[str, dict[str, list[str]]] = {}
    for f in FILES:
        ctx = data.contexts_by_lineno(str(ROOT / f))
        lines[f] = {str(n): sorted({c.rsplit("|", 1)[0] for c in cs if c}) for n, cs in ctx.items()}
    durations = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        cls, name = case.get("classname", ""), case.get("name", "")
        durations[(cls, name)] = float(case.get("time", 0.0))
    # junit names tests by dotted module path + name; contexts use node ids: join on both.
    by_node = {}
    for ids in lines.values():
        for tests_ in ids.values():
            for node in tests_:
                path, _, name = node.partition("::")
                cls = path[:-3].replace("/", ".") + ("." + name.rsplit("::", 1)[0] if "::" in name else "")
                by_node[node] = durations.get((cls, name.rsplit("::", 1)[-1]), 1.0)
    out.write_text(json.dumps({"lines": lines, "durations": by_node}), encoding="utf-8")


# ----------------------------------------------------------------------------- sample
def all_mutants(files: list[str]):
    from mutmut import Context, list_mutations

    out = []
    for f in files:
        src = (ROOT / f).read_text(encoding="utf-8")
        out += [(f, m) for m in list_mutations(Context(source=src, filename=f))]
    return out


def stratified_sample(everything, n: int, seed: int, min_per_file: int):
    """Proportional allocation by file (largest remainder, >= min_per_file), then uniform."""
    by_file = defaultdict(list)
    for f, m in everything:
        by_file[f].append(m)
    total = len(everything)
    quota = {f: max(min_per_file, math.floor(n * len(ms) / total)) for f, ms in by_file.items()}
    while sum(quota.values()) > n:  # the floors of small files came out of the largest files' shares
        big = max(quota, key=lambda f: (quota[f] > min_per_file, quota[f]))
        quota[big] -= 1
    rest = sorted(by_file, key=lambda f: -(n * len(by_file[f]) / total - math.floor(n * len(by_file[f]) / total)))
    for f in rest:
        if sum(quota.values()) >= n:
            break
        quota[f] += 1
    rng = random.Random(seed)
    picked = []
    for f in sorted(by_file):
        picked += [(f, m) for m in rng.sample(by_file[f], min(quota[f], len(by_file[f])))]
    return picked


def mutated_source(f: str, mid) -> str:
    from mutmut import Context, mutate

    ctx = Context(source=(ROOT / f).read_text(encoding="utf-8"), filename=f, mutation_id=mid)
    new, n = mutate(ctx)
    assert n == 1, (f, mid, n)
    return new


def tests_for(f: str, line: int, cmap: dict, budget_s: float = 60.0) -> tuple[list[str], float]:
    """Tests executing ``line`` of ``f``, fastest first, up to ``budget_s`` of measured time.

    A line on the hot path (the step model) is executed by hundreds of tests; the fastest
    ones kill almost every mutant that any of them kills, and the budget bounds what a
    survivor costs. Cutting can only turn a kill into a survival (the score is a lower bound).
    """
    tests = cmap["lines"].get(f, {}).get(str(line))
    if tests is None:  # not an executable line by coverage's account (e.g. a continuation)
        return [], 0.0
    dur = cmap["durations"]
    if not tests:  # executed only at import: the file's tests
        return [t for t in FILE_TESTS.get(f, []) if (ROOT / t).exists()], 60.0
    tests = sorted(tests, key=lambda t: dur.get(t, 1.0))
    kept, total = [], 0.0
    for t in tests:
        if kept and total + dur.get(t, 1.0) > budget_s:
            break
        kept.append(t)
        total += dur.get(t, 1.0)
    return kept, total


def run_tests(tests: list[str], timeout_s: float) -> tuple[str, float]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HYPOTHESIS_NO_DATABASE": "1"}
    cmd = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", "-n", "0", *tests]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout_s, env=env)
        outcome = "survived" if r.returncode == 0 else "killed"
        if r.returncode not in (0, 1):  # usage error / collection error / internal error: still a kill,
            outcome = f"killed (exit {r.returncode})"  # but say so (e.g. an import-time SyntaxError)
    except subprocess.TimeoutExpired:
        outcome = "killed (timeout)"
    return outcome, time.perf_counter() - t0


def enclosing_line(f: str, lineno0: int, cmap: dict) -> int:
    """The mutated line (1-based) or, for a continuation line, the statement line above it."""
    known = cmap["lines"].get(f, {})
    n = lineno0 + 1
    while n > 0 and str(n) not in known:
        n -= 1
    return n


def cmd_run(a) -> None:
    cmap = json.loads(Path(a.map).read_text(encoding="utf-8"))
    everything = all_mutants(a.files)
    if a.only:
        keys = set(a.only)
        picked = [(f, m) for f, m in everything if f"{f}:{m.line_number + 1}:{m.index}" in keys]
    else:
        picked = stratified_sample(everything, a.sample, a.seed, a.min_per_file)
    print(f"{len(everything)} mutants in {len(a.files)} files; testing {len(picked)} (seed {a.seed})", flush=True)
    results = []
    for i, (f, mid) in enumerate(picked, 1):
        path = ROOT / f
        original = path.read_text(encoding="utf-8")
        new = mutated_source(f, mid)
        line = new.splitlines()[mid.line_number] if mid.line_number < len(new.splitlines()) else ""
        if a.tests:  # a fixed list (e.g. re-testing survivors with tests written after the map)
            tests, base_s = a.tests, a.timeout / 3
        else:
            tests, base_s = tests_for(f, enclosing_line(f, mid.line_number, cmap), cmap, a.budget)
        if not tests:
            outcome, secs = "survived (no test)", 0.0
        else:
            try:
                path.write_text(new, encoding="utf-8")
                outcome, secs = run_tests(tests, min(a.timeout, 3 * base_s + 30))
            finally:
                path.write_text(original, encoding="utf-8")
        rec = {"file": f, "line": mid.line_number + 1, "index": mid.index, "original": mid.line.strip(),
               "mutated": line.strip(), "outcome": outcome, "seconds": round(secs, 1), "n_tests": len(tests)}
        results.append(rec)
        print(f"[{i}/{len(picked)}] {outcome:18s} {f}:{rec['line']}  {rec['original'][:60]!r} -> "
              f"{rec['mutated'][:60]!r} ({len(tests)} tests, {secs:.0f} s)", flush=True)
        Path(a.out).write_text(json.dumps({"total_mutants": len(everything), "files": a.files, "seed": a.seed,
                                           "sample": a.sample, "results": results}, indent=1), encoding="utf-8")
    score(Path(a.out))


# ----------------------------------------------------------------------------- score
def _binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for k successes in n trials."""
    alpha = 1 - level

    def solve(f, target):  # f increasing in p on [0, 1]
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: 1 - _binom_cdf(k - 1, n, p), alpha / 2)
    upper = 1.0 if k == n else solve(lambda p: -_binom_cdf(k, n, p), -alpha / 2)
    return lower, upper


def score(path: Path, equivalent: set[str] | None = None) -> None:
    d = json.loads(path.read_text(encoding="utf-8"))
    res = d["results"]
    eq = equivalent or set()
    key = lambda r: f"{r['file']}:{r['line']}:{r['index']}"  # noqa: E731
    killed = sum(r["outcome"].startswith("killed") for r in res)
    n = len(res)
    lo, hi = clopper_pearson(killed, n)
    print(f"{path.name}: seed {d['seed']}, {n} of {d['total_mutants']} mutants: {killed} killed = "
          f"{killed / n:.1%} (95 % CI {lo:.1%}-{hi:.1%})")
    n_eq = sum(key(r) in eq for r in res if not r["outcome"].startswith("killed"))
    if eq:
        lo2, hi2 = clopper_pearson(killed, n - n_eq)
        print(f"  excluding {n_eq} equivalent: {killed}/{n - n_eq} = {killed / (n - n_eq):.1%} "
              f"(95 % CI {lo2:.1%}-{hi2:.1%})")
    per = defaultdict(lambda: [0, 0])
    for r in res:
        per[r["file"]][0] += r["outcome"].startswith("killed")
        per[r["file"]][1] += 1
    for f, (k, m) in sorted(per.items()):
        print(f"  {f.removeprefix(PKG + '/'):18s} {k}/{m}")
    for r in res:
        if not r["outcome"].startswith("killed"):
            tag = "equivalent" if key(r) in eq else r["outcome"]
            print(f"  {tag:18s} {key(r)}  {r['original'][:70]!r} -> {r['mutated'][:70]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("map", help="coverage run with per-test contexts")
    m.add_argument("--out", default="mutation-map.json")
    m.add_argument("--workers", default="2")
    m.add_argument("tests", nargs="*", default=["tests"])
    r = sub.add_parser("run", help="test a seeded stratified sample of mutants")
    r.add_argument("--map", required=True)
    r.add_argument("--sample", type=int, default=80)
    r.add_argument("--seed", type=int, default=15)
    r.add_argument("--min-per-file", type=int, default=3)
    r.add_argument("--timeout", type=float, default=300.0, help="cap on one mutant's test time (s)")
    r.add_argument("--budget", type=float, default=60.0, help="measured seconds of tests per mutant (fastest first)")
    r.add_argument("--files", nargs="*", default=FILES)
    r.add_argument("--out", default="mutants.json")
    r.add_argument("--only", nargs="*", default=None, help="file:line:index of mutants to (re)run")
    r.add_argument("--tests", nargs="*", default=None, help="run these tests for every mutant instead of the map's")
    s = sub.add_parser("score", help="score a results file")
    s.add_argument("results")
    s.add_argument("--equivalent", nargs="*", default=[], help="file:line:index judged equivalent")
    a = ap.parse_args()
    if a.cmd == "map":
        build_map(a.tests, Path(a.out), int(a.workers))
    elif a.cmd == "run":
        cmd_run(a)
    else:
        score(Path(a.results), set(a.equivalent))


if __name__ == "__main__":
    main()
