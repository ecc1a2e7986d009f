"""One serializer per type (issue 13, item 11): a layout's record, label and table columns agree."""

from __future__ import annotations

from carbonscaling.perf.layout import Layout
from carbonscaling.serialize import layout_columns, layout_label, layout_record


def test_layout_columns_are_the_record_keys_with_types():
    lay = Layout(tp=8, pp=4, dp=16, cp=2, ep=4, zero=1, microbatch=2, vp=2, recompute="full", recompute_layers=3,
                 global_batch_sequences=2048)
    rec = layout_record(lay)
    cols = layout_columns()
    assert list(cols) == [k for k in rec if k != "microbatches"]
    assert cols["recompute"] == "string" and cols["recompute_layers"] == "int64" and cols["etp"] == "int64"
    assert rec["devices"] == 8 * 4 * 16 * 2 and rec["microbatches"] == 2048 // (16 * 2)
    assert layout_label(lay) == "TP8 CP2 PP4 VP2 DP16 EP4 ZeRO-1 mb2 rc=full(3)"


def test_sweep_rows_take_the_layout_from_the_one_record():
    from carbonscaling.experiments import grid

    assert set(layout_columns()) <= set(grid.ESTIMATE_COLUMNS)
    assert all(grid.ESTIMATE_COLUMNS[k] == v for k, v in layout_columns().items())
