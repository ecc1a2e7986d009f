"""Speed before/after in one run: `carbonscaling paper`, warm in-process `estimate`, CLI start-up.

    python benchmarks/bench_speed.py [--baseline ac80291] [--repeat 3] [--paper-repeat 1] [--skip-paper]

The baseline commit is checked out with `git worktree add` into a temporary directory and run
from its own source tree (PYTHONPATH), next to this tree, alternating A/B so that load on a
shared machine hits both alike. Printed: median wall seconds of each measurement and the ratio
baseline / current.

* paper: `python -m carbonscaling paper --out TMP --no-progress` in a fresh process, wall;
* estimate: in one process per tree, `carbonscaling.estimate(model=M, device=D)` once to warm,
  then ``--repeat`` timed calls; the median wall and CPU (process time), per catalog model
  (whatever estimate() does by default in each tree: after issue 13 that includes the
  uncertainty bands);
* start-up: `python -m carbonscaling --help` and `... devices` in fresh processes, wall and
  CPU (user + system of the child: on a loaded machine the CPU seconds are the stable figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("llama3.1-8b", "H100"), ("llama3.1-70b", "H100"), ("llama3.1-405b", "H100"), ("gpt3-175b", "A100-80GB"),
         ("megatron-1.7b", "A100-80GB"), ("mixtral-8x7b", "H100"), ("deepseek-v3", "H100"), ("bloom-176b", "A100-80GB")]

_ESTIMATE = """
import json, statistics, sys, time
import carbonscaling as cs
cases, repeat = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for model, device in cases:
    try:
        cs.estimate(model=model, device=device)
    except Exception as err:
        out[model] = None
        continue
    ts, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        cs.estimate(model=model, device=device)
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out[model] = [statistics.median(ts), statistics.median(cpu)]
print(json.dumps(out))
"""


def env_for(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree / "src")
    # As installed (pip compiles .pyc): a PYTHONDONTWRITEBYTECODE environment would recompile the
    # package on every start and add ~50 ms to each CLI start-up.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def wall(cmd: list[str], tree: Path, cwd: Path | None = None, cpu: list | None = None) -> float:
    """Wall seconds of ``cmd``; its CPU seconds (user + system) appended to ``cpu``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env_for(tree), cwd=cwd or tree, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return dt


def median_wall(cmd, trees, repeat) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and median CPU seconds per tree (A/B alternating)."""
    times: dict[str, list[float]] = {k: [] for k in trees}
    cpus: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(repeat):
        for k, tree in trees.items():
            times[k].append(wall(cmd, tree, cpu=cpus[k]))
    return ({k: statistics.median(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in cpus.items()})


def estimates(trees, repeat) -> dict[str, dict]:
    out = {}
    for k, tree in trees.items():
        p = subprocess.run([sys.executable, "-c", _ESTIMATE, json.dumps(CASES), str(repeat)], env=env_for(tree),
                           cwd=tree, check=True, capture_output=True, text=True)
        out[k] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def row(name: str, before: float | None, after: float | None, unit: str = "s") -> str:
    if before is None or after is None:
        return f"| {name} | {before if before is not None else 'n/a'} | {after if after is not None else 'n/a'} | |"
    return f"| {name} | {before:.3f} {unit} | {after:.3f} {unit} | {before / after:.2f}x |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="ac80291")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--paper-repeat", type=int, default=1)
    ap.add_argument("--skip-paper", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), a.baseline], check=True,
                       capture_output=True)
        try:
            trees = {"before": base, "after": ROOT}
            print(f"baseline {a.baseline} vs {ROOT} (working tree); {os.cpu_count()} CPUs; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            lines = ["| measurement | before | after | before/after |", "|---|---|---|---|"]
            py = sys.executable
            for label, args in (("`carbonscaling --help`", ["--help"]), ("`carbonscaling devices`", ["devices"])):
                m, c = median_wall([py, "-m", "carbonscaling", *args], trees, a.repeat)
                lines.append(row(f"{label} wall (median of {a.repeat})", m["before"], m["after"]))
                lines.append(row(f"{label} CPU user+sys (median of {a.repeat})", c["before"], c["after"]))
                print("\n".join(lines[-2:]), flush=True)
            est = estimates(trees, a.repeat)
            for model, device in CASES:
                b, c = est["before"].get(model), est["after"].get(model)
                for i, what in enumerate(("wall", "CPU")):
                    lines.append(row(f"warm `estimate` {model} on {device}, {what} (median of {a.repeat})",
                                     b[i] if b else None, c[i] if c else None))
                print("\n".join(lines[-2:]), flush=True)
            if not a.skip_paper:
                times: dict[str, list[float]] = {"before": [], "after": []}
                cpus: dict[str, list[float]] = {"before": [], "after": []}
                for i in range(a.paper_repeat):
                    for k, tree in trees.items():
                        out = Path(tmp) / f"paper-{k}-{i}"
                        times[k].append(wall([py, "-m", "carbonscaling", "paper", "--out", str(out), "--no-progress"],
                                             tree, cwd=Path(tmp), cpu=cpus[k]))
                lines.append(row(f"`carbonscaling paper` wall (median of {a.paper_repeat})",
                                 statistics.median(times["before"]), statistics.median(times["after"])))
                lines.append(row(f"`carbonscaling paper` CPU, all processes (median of {a.paper_repeat})",
                                 statistics.median(cpus["before"]), statistics.median(cpus["after"])))
                print("\n".join(lines[-2:]), flush=True)
            print(f"load after: {os.getloadavg()[0]:.1f}")
            print("\n".join(lines))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False,
                           capture_output=True)


if __name__ == "__main__":
    main()
