"""One plain-dict form per type, shared by ``--json``, CSV rows, reports and tables.

* a layout: :func:`layout_record` (its fields, ``devices`` and ``microbatches``) and
  :func:`layout_label` (``Layout.describe()``, one line for tables);
* a model: :meth:`carbonscaling.scaling.ModelSpec.summary`;
* a system: :func:`carbonscaling.hardware.describe`.

New layout fields (CP, FSDP, ...) appear everywhere through ``Layout.model_dump``; the JSON
keys are the Layout's field names (Megatron-Core's: ``vp`` for virtual stages, not ``interleave``).
"""

from __future__ import annotations

from typing import Any


def layout_record(layout) -> dict[str, Any]:
    """``{"devices", <every Layout field>, "microbatches"}`` as plain values."""
    return {"devices": layout.devices, **layout.model_dump(), "microbatches": layout.microbatches}


def layout_label(layout) -> str:
    """A one-line Megatron-style description (``TP8 CP1 PP4 VP2 DP16 EP1 ZeRO-1 mb1 rc=selective``):
    :meth:`carbonscaling.perf.layout.Layout.describe`, the one label of a layout."""
    return layout.describe()
