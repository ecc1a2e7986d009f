"""One plain-dict form per type, shared by ``--json``, CSV rows, reports and tables.

* a layout: :func:`layout_record` (its fields, ``devices`` and ``microbatches``),
  :func:`layout_label` (``Layout.describe()``, one line for tables) and
  :func:`layout_columns` (the record's keys as typed table columns: sweep Parquet/CSV);
* a model: :meth:`carbonscaling.model_spec.ModelSpec.summary`;
* a system: :func:`carbonscaling.hardware.describe`.

New layout fields (CP, FSDP, ...) appear everywhere through ``Layout.model_dump``; the JSON
keys are the Layout's field names (Megatron-Core's: ``vp`` for virtual stages, not ``interleave``).
"""

from __future__ import annotations

from typing import Any, Literal, Union, get_args, get_origin


def layout_record(layout) -> dict[str, Any]:
    """``{"devices", <every Layout field>, "microbatches"}`` as plain values."""
    return {"devices": layout.devices, **layout.model_dump(), "microbatches": layout.microbatches}


def layout_label(layout) -> str:
    """A one-line Megatron-style description (``TP8 CP1 PP4 VP2 DP16 EP1 ZeRO-1 mb1 rc=selective``):
    :meth:`carbonscaling.perf.layout.Layout.describe`, the one label of a layout."""
    return layout.describe()


def layout_columns() -> dict[str, str]:
    """The keys of :func:`layout_record` (but ``microbatches``) as table columns with their types.

    Returns
    -------
    dict of str to str
        ``{"devices": "int64", <every Layout field>: "int64" | "string"}`` in record order
        (integers, optional integers included, are ``int64``; choices are ``string``).
    """
    from .perf.layout import Layout

    def kind(annotation) -> str:
        args = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) is Union \
            else [annotation]
        return "int64" if args == [int] else "string" if get_origin(args[0]) is Literal or args[0] is str else "float64"

    return {"devices": "int64", **{name: kind(info.annotation) for name, info in Layout.model_fields.items()}}
