"""Time the parallelism search across model sizes and devices; compare with plain Algorithm 1.

    python benchmarks/bench_search.py [--devices B100,H100] [--ref-budget-s 20]

For cs-v1 models from ~1e9 to ~1e16 parameters on each catalog device it prints the
search wall time, the answer (devices, MFU) or why there is none, and, where the
reference implementation of v1 Algorithm 1 (tests/test_search.py) finishes within its
budget, the reference time and the speed ratio. It also times the CLI end to end
(`carbonscaling estimate --preset cs-v1 --d-model 12288 --device B100 --json`, and the
~1e16-parameter model) and reports the peak resident memory of those processes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from carbonscaling.errors import InfeasibleError  # noqa: E402
from carbonscaling.hardware import device_names, load_system  # noqa: E402
from carbonscaling.scaling import from_preset  # noqa: E402
from carbonscaling.search import search  # noqa: E402

D_MODELS = (1536, 3072, 6144, 12288, 24576, 49152, 98304)  # cs-v1: N ~ 1.9e9 .. 1.1e16


def _reference(model, system, days, budget_s):
    """Run the reference only while it stays within budget (it walks N one by one)."""
    from test_search import reference_algorithm_1

    import carbonscaling.search as s

    start = time.perf_counter()
    deadline_s = days * 86400
    n0 = s.ideal_devices(model, system, deadline_s)
    # Probe: the reference costs ~1 evaluate call per N; skip when the answer is far above N_ideal.
    try:
        answer = search(model, system, deadline_days=days).devices
    except InfeasibleError:
        return None
    if answer - n0 > budget_s * 1000:  # ~1 ms per device count visited
        return None
    ref = reference_algorithm_1(model, system, days, n_max=answer + 1)
    return ref, time.perf_counter() - start


_CHILD = (
    "import resource, sys\n"
    "from carbonscaling.cli import main\n"
    "main(sys.argv[1:])\n"
    "sys.stderr.write(f'\\nmaxrss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
)


def _cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one CLI run in a fresh process."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss_kb = float(proc.stderr.rsplit("maxrss_kb=", 1)[-1].split()[0])
    return wall, rss_kb / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default=",".join(device_names()))
    ap.add_argument("--ref-budget-s", type=float, default=20.0)
    ap.add_argument("--deadline-days", type=float, default=90.0)
    a = ap.parse_args()

    print(f"{'device':10s} {'d_model':>7s} {'params':>9s} {'search_s':>8s} {'devices':>14s} {'mfu':>6s} "
          f"{'layouts':>9s} {'ref_s':>7s} {'speedup':>8s}")
    total = 0.0
    for dev in a.devices.split(","):
        system = load_system(dev)
        for d in D_MODELS:
            m = from_preset("cs-v1", d)
            t = time.perf_counter()
            try:
                r = search(m, system, deadline_days=a.deadline_days)
                res = f"{r.devices:14,d} {r.mfu:6.3f} {r.layouts_evaluated:9,d}"
            except InfeasibleError as err:
                res = f"{'none (' + err.constraint + ')':>14s} {'':6s} {'':9s}"
                r = None
            dt = time.perf_counter() - t
            total += dt
            ref_txt = f"{'':7s} {'':8s}"
            if r is not None and r.devices < 5000:
                got = _reference(m, system, a.deadline_days, a.ref_budget_s)
                if got is not None and got[0] is not None:
                    (n_ref, _dur), t_ref = got
                    assert n_ref == r.devices, (dev, d, n_ref, r.devices)
                    ref_txt = f"{t_ref:7.2f} {t_ref / dt:7.1f}x"
            print(f"{dev:10s} {d:7d} {m.params_total:9.2e} {dt:8.3f} {res} {ref_txt}")
    print(f"total search time: {total:.1f} s")

    for args in (["estimate", "--preset", "cs-v1", "--d-model", "12288", "--device", "B100", "--json"],
                 ["estimate", "--preset", "cs-v1", "--d-model", "98304", "--device", "B100", "--json"]):
        wall, rss = _cli(args)
        print(f"CLI {' '.join(args)}: {wall:.2f} s wall, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
