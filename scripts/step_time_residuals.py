"""Write ``src/carbonscaling/data/step_time_residuals.csv``: the step-time model's own error.

Derived from validation (``carbonscaling.validation.harness.validate``, the ``ours`` predictor
with each published run's layout pinned). For every run the ratio measured / predicted step
time is taken from throughput when the run reports it (``tflops_per_device``, else ``mfu``;
HFU-counted runs against our HFU), and from device-hours only when the run reports no
throughput (device-hours of a real run also carry restarts, which ``goodput`` covers).

With ``--with-nemo`` (and the step-time validation over measured Megatron-Bridge throughput,
``carbonscaling.validation.throughput``), every expressible row of ``data/nemo_performance.csv``
is added too: measured / predicted step time with the row's layout as run. Not the default yet:
those rows span B200/B300/GB200/GB300 and NVFP4/MXFP8 and would be pooled for every device
(docs/decisions.md).

Run from the repository root after changing the performance model::

    python scripts/step_time_residuals.py [--with-nemo]
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from carbonscaling.validation.harness import prediction_key, validate
from carbonscaling.validation.runs import resolve_runs

OUT = Path(__file__).resolve().parents[1] / "src" / "carbonscaling" / "data" / "step_time_residuals.csv"


def ratio(run, reported: dict, predicted: dict) -> tuple[str, float] | None:
    """(quantity, measured / predicted step time) or None when nothing comparable is reported."""
    for q in ("tflops_per_device", "mfu"):
        key = prediction_key(run, q)
        if q in reported and key in predicted:
            return q, predicted[key] / reported[q]  # throughput ratio inverted: time
    # Device-hours time a step only when the device count was published (model-card GPU-hours with
    # an assumed count are a different quantity).
    if "device_hours" in reported and "device_hours" in predicted and run.n_devices is not None:
        return "device_hours", reported["device_hours"] / predicted["device_hours"]
    return None


def nemo_rows() -> list[dict]:
    """Measured / predicted step time of the Megatron-Bridge rows, when that validation exists."""
    try:
        from carbonscaling.validation.throughput import step_time_section
    except ImportError:
        return []
    out = []
    for r in step_time_section()["rows"]:
        out.append({"run_id": f"nemo:{r['model']}:{r['system']}:{r['precision']}:{r['gpus']}gpu:{r['container']}",
                    "device": r["system"], "quantity": "step_time_s",
                    "ratio_measured_over_predicted": f"{r['measured_step_s'] / r['predicted_step_s']:.4f}",
                    "source": "carbonscaling.validation.throughput (layout as run); nemo_performance.csv"})
    return out


def main() -> int:
    runs = {r.run_id: r for r in resolve_runs(None)}
    report = validate(list(runs.values()), sections=False)
    rows = []
    for row in report.runs:
        pred = row["predicted"].get("ours") or {}
        got = ratio(runs[row["run_id"]], row["reported"], pred)
        if got is None or not math.isfinite(got[1]):
            continue
        rows.append({"run_id": row["run_id"], "device": row["device"], "quantity": got[0],
                     "ratio_measured_over_predicted": f"{got[1]:.4f}",
                     "source": "carbonscaling validate, ours (pinned layout); published_runs.csv"})
    if "--with-nemo" in sys.argv[1:]:
        rows += nemo_rows()
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} runs -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
