"""Warm search times of the catalog cases the measurements note tracks, for before/after comparisons.

    python benchmarks/bench_layouts.py [--convention megatron|cs-v1] [--repeat 3]

Prints the minimum over ``--repeat`` runs of each search (in-process, after one warm-up)
and the layouts it evaluated. Run it under two checkouts (``PYTHONPATH=<src>``) to compare.
"""

from __future__ import annotations

import argparse
import time

from carbonscaling.hardware import load_system
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import from_preset, named_model
from carbonscaling.search import search

CASES = [("megatron-1.7b", "A100-80GB", 90), ("llama3.1-405b", "H100", 90), ("cs-v1:12288", "B100", 90),
         ("mixtral-8x7b", "H100", 90), ("deepseek-v3", "H100", 90), ("bloom-176b", "A100-80GB", 30)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--convention", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    kw = {} if a.convention is None else {"options": TrainingOptions(ep_convention=a.convention)}
    for name, dev, days in CASES:
        model = from_preset("cs-v1", int(name.split(":")[1])) if name.startswith("cs-v1") else named_model(name)
        system = load_system(dev)
        res = search(model, system, deadline_days=days, **kw)
        best = min(_timed(model, system, days, kw) for _ in range(a.repeat))
        print(f"{name:16s} {dev:10s} {best * 1e3:8.0f} ms  {res.layouts_evaluated:9,d} layouts  "
              f"{res.devices:7,d} devices")


def _timed(model, system, days, kw) -> float:
    t = time.perf_counter()
    search(model, system, deadline_days=days, **kw)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
