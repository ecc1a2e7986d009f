"""Write ``src/carbonscaling/data/step_time_residuals.csv``: the step-time model's own error.

Two sources, one row each, with the columns ``uncertainty.yaml``'s ``step_time`` input selects
on (``device``: the catalog device; ``model_kind``: dense, moe or hybrid; ``precision``: the
estimator's precision name):

* validation (``carbonscaling.validation.harness.validate``, the ``ours`` predictor with each
  published run's layout pinned): the ratio measured / predicted step time is taken from
  throughput when the run reports it (``tflops_per_device``, else ``mfu``; HFU-counted runs
  against our HFU), and from device-hours only when the run reports no throughput (device-hours
  of a real run also carry restarts, which ``goodput`` covers);
* the step-time validation over measured Megatron-Bridge throughput
  (``carbonscaling.validation.throughput``): every expressible row of ``data/nemo_performance.csv``,
  measured / predicted step time with the row's layout as run, under the catalog device the
  validation maps the row's system to (``throughput.SYSTEMS``: DGX-H100 -> H100-SXM, ...).
  ``--published-only`` leaves these out (the file as it was before stop 18).

Run from the repository root after changing the performance model::

    python scripts/step_time_residuals.py [--published-only]

``--summary`` writes nothing and prints the shipped file's p5 / p50 / p95 per device and pooled
(the quantiles ``uncertainty.quantile`` takes: ``inverted_cdf``), as docs/decisions.md quotes them.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from carbonscaling.uncertainty_inputs import model_kind  # the column's values, as the selection reads them
from carbonscaling.validation.harness import prediction_key, validate
from carbonscaling.validation.runs import resolve_runs

OUT = Path(__file__).resolve().parents[1] / "src" / "carbonscaling" / "data" / "step_time_residuals.csv"
COLUMNS = ("run_id", "device", "model_kind", "precision", "quantity", "ratio_measured_over_predicted", "source")


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


def published_rows() -> list[dict]:
    """Measured / predicted step time of the published runs (``carbonscaling validate``, layout pinned)."""
    from carbonscaling.validation.ours import run_model, run_precision

    runs = {r.run_id: r for r in resolve_runs(None)}
    report = validate(list(runs.values()), sections=False)
    out = []
    for row in report.runs:
        run = runs[row["run_id"]]
        got = ratio(run, row["reported"], row["predicted"].get("ours") or {})
        if got is None or not math.isfinite(got[1]):
            continue
        out.append({"run_id": row["run_id"], "device": row["device"], "model_kind": model_kind(run_model(run)),
                    "precision": run_precision(run), "quantity": got[0],
                    "ratio_measured_over_predicted": f"{got[1]:.4f}",
                    "source": "carbonscaling validate, ours (pinned layout); published_runs.csv"})
    return out


def nemo_rows() -> list[dict]:
    """Measured / predicted step time of the expressible Megatron-Bridge rows (layout as run)."""
    from carbonscaling.scaling import named_model
    from carbonscaling.validation.throughput import MODEL_CHANGES, MODELS, PRECISIONS, SYSTEMS, step_time_section

    out = []
    for r in step_time_section()["rows"]:
        key = MODEL_CHANGES[r["model"]][0] if r["model"] in MODEL_CHANGES else MODELS[r["model"]]
        out.append({"run_id": f"nemo:{r['model']}:{r['system']}:{r['precision']}:{r['gpus']}gpu:{r['container']}",
                    "device": SYSTEMS[r["system"]], "model_kind": model_kind(named_model(key)),
                    "precision": PRECISIONS[r["precision"]], "quantity": "step_time_s",
                    "ratio_measured_over_predicted": f"{r['measured_step_s'] / r['predicted_step_s']:.4f}",
                    "source": "carbonscaling.validation.throughput (layout as run); nemo_performance.csv"})
    return out


def summary() -> list[str]:
    """p5 / p50 / p95 of measured / predicted step time pooled, per device and per device x model kind (the shipped file)."""
    from collections import defaultdict

    import numpy as np

    from carbonscaling.uncertainty_inputs import residual_rows

    by: dict[str, list[float]] = defaultdict(list)
    kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in residual_rows("step_time_residuals"):
        by[r["device"]].append(float(r["ratio_measured_over_predicted"]))
        kind[r["device"]][r["model_kind"]].append(by[r["device"]][-1])
    pooled = [x for v in by.values() for x in v]

    def line(name: str, t: list[float]) -> str:
        p5, p50, p95 = (float(np.quantile(t, q, method="inverted_cdf")) for q in (0.05, 0.5, 0.95))
        return f"| {name} | {len(t)} | {p5:.3f} | {p50:.3f} | {p95:.3f} |"

    return ["| rows | n | p5 | p50 | p95 |", "| --- | --- | --- | --- | --- |", line("pooled", pooled),
            *(x for d, t in sorted(by.items())
              for x in (line(d, t), *(line(f"{d} {k}", v) for k, v in sorted(kind[d].items()))))]


def main() -> int:
    if "--summary" in sys.argv[1:]:
        print("\n".join(summary()))
        return 0
    rows = published_rows()
    if "--published-only" not in sys.argv[1:]:
        rows += nemo_rows()
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} runs -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
