"""Write ``src/carbonscaling/data/power_residuals.csv``: the node-power model's own error.

Derived from the energy validation (``carbonscaling.power.mlperf_check``): for every metered
MLPerf Training power row shipped in ``data/mlperf_power.csv``, measured / predicted power per
accelerator slot of the default (``measured``) power model. ``uncertainty.yaml``'s ``it_power``
input bootstraps these ratios. Rerun after changing the power model or its constants::

    python scripts/power_residuals.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from carbonscaling.power import mlperf_check

OUT = Path(__file__).resolve().parents[1] / "src" / "carbonscaling" / "data" / "power_residuals.csv"


def main() -> int:
    rows = [{"row_id": r["row_id"], "device": r["device"], "n_nodes": r["n_nodes"], "reading": r["reading"],
             "cooling": r["cooling"], "measured_w": f"{r['measured_w']:.1f}", "predicted_w": f"{r['predicted_w']:.1f}",
             "ratio_measured_over_predicted": f"{r['measured_w'] / r['predicted_w']:.4f}",
             "source": "carbonscaling.power.mlperf_check (measured power model); mlperf_power.csv"}
            for r in mlperf_check()]
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
