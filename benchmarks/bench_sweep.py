"""Sweep throughput: 10^5 grid points on the local process pool and on a 2-worker Dask LocalCluster.

    python benchmarks/bench_sweep.py [--points 100000] [--jobs 2] [--chunk-size 2000]
                                     [--estimate-points 2000] [--skip-dask]

What is measured (printed with every figure):

* ``carbon`` grid of ``--points`` points (device x region x devices x utilization x hours):
  each point is a full ``run_carbon`` (operational + embodied with ranges), no layout search;
  wall time from submitting the first chunk to writing the last Parquet part, points/s,
  and the peak summed resident memory of the process tree (sampled every 50 ms with psutil);
* the same grid interrupted (SIGINT) after about a third of its chunks, then resumed: the
  chunks found on disk are skipped, the table is complete and equal to an uninterrupted run;
* ``estimate`` grid of ``--estimate-points`` points with the layout pinned (tp/pp/zero/
  microbatch fixed, devices swept), i.e. one step-model evaluation + carbon per point;
  and of full layout searches for a few catalog models, to say what a search point costs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEVICES = ["H100", "A100-80GB", "B100", "V100"]


def carbon_grid(points: int, chunk: int) -> dict:
    regions = ["us-east5", "europe-west1", "asia-south1", "us-central1", "europe-north1"]
    utils = [0.2, 0.3, 0.4, 0.5, 0.6]
    n_dev = [8 * 2**i for i in range(10)]
    base = len(DEVICES) * len(regions) * len(utils) * len(n_dev)
    hours = [24.0 * (1 + i) for i in range(max(1, points // base))]
    return {"name": "bench-carbon", "kind": "carbon", "chunk_size": chunk,
            "grid": {"device": DEVICES, "region": regions, "n_devices": n_dev, "utilization": utils,
                     "duration_h": hours}}


class PeakRSS:
    """Peak summed RSS (MB) of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.proc, self.peak, self.interval = psutil.Process(), 0.0, interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total / 2**20)
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def timed_grid(spec: dict, out: Path, scheduler: str | None, jobs: int) -> dict:
    from carbonscaling.experiments.executors import open_executor
    from carbonscaling.experiments.grid import grid_from_mapping, run_grid

    g = grid_from_mapping(spec)
    t_start = time.perf_counter()
    with PeakRSS() as mem, open_executor(scheduler, jobs) as ex:
        t_ready = time.perf_counter()
        res = run_grid(g, out, executor=ex)
    return {"points": g.n_points, "chunks": g.n_chunks, "run_s": res.seconds, "startup_s": t_ready - t_start,
            "points_per_s": g.n_points / res.seconds, "peak_rss_mb": mem.peak, "executor": res.executor}


_CHILD = """
import sys
from carbonscaling.experiments.grid import run_grid, grid_from_mapping
import json
spec = json.loads(sys.argv[1])
run_grid(grid_from_mapping(spec), sys.argv[2], jobs=int(sys.argv[3]))
"""


def interrupted_then_resumed(spec: dict, out: Path, jobs: int) -> dict:
    """Run the sweep in a child process, SIGINT it once a third of the chunks are on disk, resume."""
    from carbonscaling.experiments.grid import grid_from_mapping, read_results, run_grid

    g = grid_from_mapping(spec)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec), str(out), str(jobs)],
                             stderr=subprocess.DEVNULL, start_new_session=True)
    target = max(1, g.n_chunks // 3)
    while child.poll() is None and len(list(out.glob("part-*"))) < target:
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGINT)
    child.wait(120)
    before = len(list(out.glob("part-*")))
    t0 = time.perf_counter()
    res = run_grid(g, out, jobs=jobs)
    df = read_results(out)
    return {"chunks_on_disk_after_interrupt": before, "chunks": g.n_chunks, "resumed_run": res.chunks_run,
            "resumed_skipped": res.chunks_skipped, "resume_s": time.perf_counter() - t0,
            "rows": len(df), "distinct_points": int(df["point"].nunique()), "exit_code": child.returncode}


def estimate_points(n: int, jobs: int, out: Path) -> dict:
    spec = {"name": "bench-pinned", "kind": "estimate", "chunk_size": max(1, n // (4 * jobs)),
            "grid": {"devices": [64 * (i + 1) for i in range(max(1, n // 4))],
                     "region": ["us-east5", "europe-west1", "asia-south1", "us-central1"]},
            "fixed": {"model": "llama3.1-8b", "device": "H100", "tp": 1, "pp": 1, "zero": 1,
                      "microbatch": 1, "interleave": 1, "recompute": "none"}}
    return timed_grid(spec, out, None, jobs)


def search_points(jobs: int, out: Path) -> dict:
    spec = {"name": "bench-search", "kind": "estimate", "chunk_size": 2,
            "grid": {"model": ["llama3.1-8b", "llama3.1-70b", "megatron-1.7b", "mixtral-8x7b"],
                     "device": ["H100", "A100-80GB"], "deadline_days": [30, 90]}}
    try:
        return timed_grid(spec, out, None, jobs)
    except Exception as err:  # a catalog without one of these models
        return {"error": str(err)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=2000)
    ap.add_argument("--estimate-points", type=int, default=2000)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = carbon_grid(a.points, a.chunk_size)
        results["carbon_pool"] = timed_grid(spec, tmp / "pool", None, a.jobs)
        print("carbon grid, process pool:", results["carbon_pool"], flush=True)
        if not a.skip_dask:
            results["carbon_dask"] = timed_grid(spec, tmp / "dask", "local", a.jobs)
            print("carbon grid, Dask LocalCluster:", results["carbon_dask"], flush=True)
        results["resume"] = interrupted_then_resumed(spec, tmp / "resume", a.jobs)
        print("interrupted, then resumed:", results["resume"], flush=True)
        if a.estimate_points:
            results["estimate_pinned_pool"] = estimate_points(a.estimate_points, a.jobs, tmp / "pinned")
            print("estimate grid, pinned layouts, process pool:", results["estimate_pinned_pool"], flush=True)
            results["estimate_search_pool"] = search_points(a.jobs, tmp / "search")
            print("estimate grid, full searches, process pool:", results["estimate_search_pool"], flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
