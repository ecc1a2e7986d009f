"""Time `carbonscaling paper` end to end, per phase, per experiment, and the costliest searches.

    python benchmarks/bench_paper.py [--jobs 2] [--per-experiment] [--profile 3]

* whole run: `carbonscaling paper --out TMP --no-progress` in a fresh process (what a user
  runs), wall time, and the phases from TMP/run.json (searches, figures, report);
* per experiment, from the whole run's CSVs: the distinct searches it uses and their
  summed seconds (a search shared by several experiments counts in each);
* ``--per-experiment``: `carbonscaling paper --only NAME` alone for every experiment
  (standalone cost: nothing shared);
* ``--profile K``: cProfile of the K slowest searches, run in this process, to show what
  inside the search dominates.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTION_COLS = ("opt.dynamic_eviction", "opt.flexible_sharding", "opt.qat", "opt.precision")


def run_paper(out: Path, jobs: int | None, only: str | None = None) -> float:
    cmd = [sys.executable, "-m", "carbonscaling", "paper", "--out", str(out), "--no-progress"]
    cmd += ["--jobs", str(jobs)] if jobs else []
    cmd += ["--only", only] if only else []
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def per_experiment_searches(out: Path) -> list[tuple[str, int, float]]:
    rows = []
    for csv_path in sorted(out.glob("*/*.csv")):
        if csv_path.stem != csv_path.parent.name:
            continue
        seen: dict[tuple, float] = {}
        for r in csv.DictReader(csv_path.open(encoding="utf-8")):
            if r.get("kind") == "ideal" or not r.get("search_s"):
                continue
            key = (r["preset"], r["d_model"], r["device"], r["years_ahead"], r["deadline_days_used"],
                   *(r.get(c, "") for c in OPTION_COLS))
            seen[key] = float(r["search_s"])
        rows.append((csv_path.stem, len(seen), sum(seen.values())))
    return rows


def profile(run_json: Path, k: int) -> None:
    from carbonscaling.experiments.runner import Job, solve

    searches = json.loads(run_json.read_text())["searches"][:k]
    prof = cProfile.Profile()
    for s in searches:
        job = Job(s["preset"], s["d_model"], s["device"], s["years_ahead"], tuple(sorted(s["options"].items())),
                  s["deadline_days"], s["on_infeasible"])
        t0 = time.perf_counter()
        prof.runcall(solve, job)
        print(f"  {s['preset']} d={s['d_model']} {s['device']} +{s['years_ahead']:g}y {s['options'] or ''} "
              f"deadline {s['deadline_days']:g} d: {time.perf_counter() - t0:.2f} s ({s['status']})")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: the command's default)")
    ap.add_argument("--per-experiment", action="store_true", help="also run each experiment alone")
    ap.add_argument("--profile", type=int, default=0, metavar="K", help="cProfile the K slowest searches")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "paper"
        wall = run_paper(out, args.jobs)
        info = json.loads((out / "run.json").read_text())
        st, t = info["stats"], info["timings"]
        print(f"carbonscaling paper: {wall:.1f} s wall (process start to exit), {info['jobs']} workers")
        print(f"  searches {t['searches_s']:.1f} s ({st['unique_searches']} distinct, {st['search_calls']} calls, "
              f"{st['search_cpu_s']:.1f} CPU-s, {st['points']} points), figures {t['figures_s']:.1f} s, "
              f"in-process total {t['total_s']:.1f} s")
        print("  slowest searches:")
        for s in info["searches"][:8]:
            print(f"    {s['seconds']:6.2f} s  {s['preset']} d={s['d_model']} {s['device']} +{s['years_ahead']:g}y "
                  f"{s['options'] or ''} -> {s['status']}, deadline {s['deadline_days_used']:g} d")
        print("per experiment (searches it uses, their summed seconds; shared searches count in each):")
        for name, n, sec in per_experiment_searches(out):
            print(f"  {name:10s} {n:4d} searches {sec:7.1f} s")
        if args.per_experiment:
            print("each experiment alone (carbonscaling paper --only NAME):")
            names = [p.name for p in sorted(out.iterdir()) if p.is_dir()]
            for name in names:
                print(f"  {name:10s} {run_paper(Path(tmp) / name, args.jobs, name):6.1f} s")
        if args.profile:
            print(f"cProfile of the {args.profile} slowest searches (in this process):")
            profile(out / "run.json", args.profile)


if __name__ == "__main__":
    main()
