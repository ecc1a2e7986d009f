"""One plain-dict form per type, shared by ``--json``, CSV rows, reports and tables.

* a layout: :func:`layout_record` (its fields, ``devices`` and ``microbatches``) and
  :func:`layout_label` (``TP8 PP4 DP16 ...``, one line for tables);
* a model: :meth:`carbonscaling.scaling.ModelSpec.summary`;
* a system: :func:`carbonscaling.hardware.describe`.

New layout fields (CP, FSDP, ...) appear everywhere through ``Layout.model_dump``.
"""

from __future__ import annotations

from typing import Any

# Label of each layout field in :func:`layout_label` (fields not listed are shown as name=value).
_LABEL = {"tp": "TP{}", "pp": "PP{}", "cp": "CP{}", "dp": "DP{}", "ep": "EP{}", "etp": "ETP{}", "fsdp": "FSDP{}",
          "zero": "ZeRO-{}", "microbatch": "mb{}", "interleave": "v{}", "vp": "v{}", "recompute": "rc={}"}


def layout_record(layout) -> dict[str, Any]:
    """``{"devices", <every Layout field>, "microbatches"}`` as plain values."""
    return {"devices": layout.devices, **layout.model_dump(), "microbatches": layout.microbatches}


def layout_label(layout) -> str:
    """A one-line description: ``TP8 PP4 DP16 EP1 ZeRO-1 mb1 v2 rc=selective``.

    Parts at their default are left out (CP 1, ETP = TP, FSDP off, all layers recomputed).
    """
    rec = layout.model_dump(exclude={"global_batch_sequences"})
    skip = {"cp": rec.get("cp") == 1, "etp": rec.get("etp") == rec.get("tp"), "fsdp": not rec.get("fsdp"),
            "zero": bool(rec.get("fsdp")), "recompute_layers": rec.get("recompute_layers") is None}
    parts = []
    for key, value in rec.items():
        if skip.get(key):
            continue
        fmt = _LABEL.get(key)
        parts.append(fmt.format(value) if fmt else f"{key}={value}")
    return " ".join(parts)
