"""Time the decision features: bands on one estimate, a sweep without them, the fronts.

    python benchmarks/bench_decide.py [--points 1000] [--repeat 5]

1. One warm in-process ``carbonscaling.estimate`` of Llama 3.1 405B on H100 in us-east5
   with uncertainty bands (the default: 4,096 samples) and without (``uncertainty=False``);
   median of ``--repeat``; and ``propagate`` alone.
2. A ``--points``-point sweep without bands: ``cs-v2`` widths cycled over 1536..4096 and
   deadlines 30..120 days on H100 (``uncertainty=False``), total wall time and per point.
3. ``deadline_front`` (Llama 3.1 405B), ``loss_front`` (cs-v2) and ``best_loss_within``
   (1,000 t, cs-v2, H100) once each.
4. The CLI end to end: ``carbonscaling estimate --model llama3.1-405b --region us-east5``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import carbonscaling as cs
from carbonscaling.inverse import best_loss_within
from carbonscaling.pareto import deadline_front, loss_front
from carbonscaling.uncertainty import propagate

LLAMA = dict(model="llama3.1-405b", device="H100", region="us-east5")


def timed(fn, repeat: int) -> tuple[float, object]:
    out, ts = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-fronts", action="store_true")
    a = ap.parse_args()

    cs.estimate(**LLAMA)  # warm caches (data files, imports)
    t_on, est = timed(lambda: cs.estimate(**LLAMA), a.repeat)
    t_off, _ = timed(lambda: cs.estimate(**LLAMA, uncertainty=False), a.repeat)
    t_mc, unc = timed(lambda: propagate(est.carbon, samples=4096, seed=0), a.repeat)
    b = unc.bands["total_tco2e"]
    print(f"estimate with bands: {t_on * 1e3:.0f} ms; without: {t_off * 1e3:.0f} ms; propagate alone "
          f"(4096 samples): {t_mc * 1e3:.1f} ms  [median of {a.repeat}]")
    print(f"  llama3.1-405b H100 us-east5: total {est.carbon.total_tco2e:,.0f} t; p5/p50/p95 "
          f"{b['p5']:,.0f} / {b['p50']:,.0f} / {b['p95']:,.0f} t; top: {', '.join(unc.top(3))}")

    widths = (1536, 2048, 2560, 3072, 3584, 4096)
    deadlines = (30, 45, 60, 90, 120)
    t0 = time.perf_counter()
    per = []
    for i in range(a.points):
        t = time.perf_counter()
        cs.estimate(preset="cs-v2", d_model=widths[i % len(widths)], device="H100",
                    deadline_days=deadlines[(i // len(widths)) % len(deadlines)], uncertainty=False)
        per.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    print(f"sweep of {a.points} points without bands: {total:.1f} s ({statistics.median(per) * 1e3:.0f} ms median, "
          f"{sorted(per)[int(0.9 * len(per))] * 1e3:.0f} ms p90 per point)")

    if not a.skip_fronts:
        for name, fn in (("deadline_front llama3.1-405b", lambda: deadline_front(**LLAMA)),
                         ("loss_front cs-v2", lambda: loss_front("cs-v2", "H100")),
                         ("best_loss_within 1000 t cs-v2", lambda: best_loss_within(1000, "cs-v2", "H100"))):
            t, _ = timed(fn, 1)
            print(f"{name}: {t:.1f} s")

    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "carbonscaling", "estimate", "--model", "llama3.1-405b", "--region",
                    "us-east5"], check=True, capture_output=True)
    print(f"CLI estimate with bands (cold process): {time.perf_counter() - t:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
