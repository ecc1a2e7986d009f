"""NVFP4 rows are described as Megatron-Bridge ran them: TP communication not overlapped.

Real rows of nemo_performance.csv: Llama 3 70B on GB200 ran TP 2 PP 4 VP 5 in both NVFP4 and
MXFP8; the NVFP4 builders set ``tp_comm_overlap = False`` (validation/recipes.py), the MXFP8 ones
keep userbuffers.
"""

import pytest

from carbonscaling.validation.throughput import NO_TP_OVERLAP_PRECISIONS, _tp_overlap_recipe, describe_row

from helpers import bench_rows


def _row(model, system, container, precision):
    (row,) = bench_rows(model, system, container, precision)
    return row


@pytest.mark.parametrize(("system", "container", "precision", "tp", "overlap", "noted"), [
    # the NVFP4 builders turn userbuffers off: TP 2's collectives are exposed, and the row says so
    ("DGX-GB200", "26.02", "NVFP4", 2, False, True),
    ("DGX-GB200", "26.04", "NVFP4", 2, False, True),
    ("DGX-GB200", "26.04.01", "NVFP4", 2, False, True),
    # the same layout in MXFP8 keeps userbuffers
    ("DGX-GB200", "26.04", "MXFP8", 2, True, False),
    # TP 1 has nothing to overlap: no overlap and no recipe note
    ("DGX-GB300", "26.04", "NVFP4", 1, False, False),
])
def test_llama3_70b_tp_comm_overlap_as_the_builders_set_it(system, container, precision, tp, overlap, noted):
    row = _row("LLAMA3_70B", system, container, precision)
    assert int(row["tp"]) == tp
    _, _, options, pins, assumed = describe_row(row)
    assert options.precision == precision.lower() and pins["tp"] == tp
    assert options.overlap_tp_comm is overlap
    assert ("recipe: TP communication not overlapped" in assumed) is noted


def test_only_nvfp4_is_listed():
    assert NO_TP_OVERLAP_PRECISIONS == ("NVFP4",)
    row = _row("LLAMA3.1_405B", "DGX-GB200", "26.04", "NVFP4")
    assert not _tp_overlap_recipe(row)
    assert _tp_overlap_recipe({**row, "precision": "MXFP8"})
    assert not _tp_overlap_recipe({**row, "tp": "1", "precision": "MXFP8"})


def test_exposed_tp_comm_makes_the_nvfp4_row_slower():
    """The same row predicted with and without the overlap: exposed TP collectives only add time."""
    from carbonscaling.search import search

    row = _row("LLAMA3_70B", "DGX-GB200", "26.04", "NVFP4")
    model, system, options, pins, _ = describe_row(row)
    slow = search(model, system, deadline_days=36500, options=options, pinned=pins).step
    fast = search(model, system, deadline_days=36500, options=options.model_copy(update={"overlap_tp_comm": True}),
                  pinned=pins).step
    assert float(slow.tp_comm_s) > 0.0 and float(fast.tp_comm_s) == 0.0
    assert float(slow.step_time_s) > float(fast.step_time_s)
