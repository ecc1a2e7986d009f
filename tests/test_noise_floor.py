"""The noise floor of the Megatron-Bridge step times, by hand and as invariants."""

import pytest
from hypothesis import given, strategies as st

from carbonscaling.validation.noise_floor import best_constant, description_key, described_key, noise_floor
from carbonscaling.validation.throughput import pretrain_rows


def _row(container, step, **kw):
    base = dict(model="M", system="DGX-B200", precision="MXFP8", gpus="8", tp="1", pp="1", cp="", vp="", ep="8",
                mbs="1", gbs="512", seq_len="4096", notes="", container=container, step_time_s=str(step))
    return {**base, **kw}


def _mape(times, p):
    return sum(abs(p / t - 1.0) for t in times) / len(times)


def test_best_constant_by_hand():
    # weights 1, 1/2, 1/4 (sum 7/4): the first alone passes half of it, so p = 1 s;
    # MAPE = (0 + 1/2 + 3/4) / 3
    assert best_constant([4.0, 1.0, 2.0]) == 1.0
    assert _mape([1.0, 2.0, 4.0], 1.0) == pytest.approx(1.25 / 3)
    # two equal weights: the smaller time is reached first; either end is optimal (MAPE 1/2 of spread / 2)
    assert best_constant([10.0, 10.0]) == 10.0


@given(st.lists(st.floats(0.1, 100.0), min_size=1, max_size=9), st.floats(0.05, 200.0))
def test_best_constant_is_no_worse_than_any_other(times, other):
    assert _mape(times, best_constant(times)) <= _mape(times, other) + 1e-12


def test_groups_join_releases_and_precision_labels_only():
    rows = [_row("25.11", 4.0, precision="FP8-MX"), _row("26.02", 5.0), _row("26.04", 4.5),
            _row("26.04", 3.0, mbs="2"),                        # another microbatch: its own description
            _row("26.06", 6.0, notes="source model label 'M (w/o MTP)'")]   # another MTP label: its own
    assert description_key(rows[0]) == description_key(rows[1]) == description_key(rows[2])
    assert len({description_key(r) for r in rows}) == 3
    nf = noise_floor(rows)
    s = nf["summary"]
    assert (s["rows"], s["descriptions"], s["repeat_groups"], s["rows_in_repeat_groups"]) == (5, 3, 1, 3)
    (g,) = nf["groups"]
    assert sorted(g["containers"]) == ["25.11", "26.02", "26.04"]
    assert g["spread"] == pytest.approx(5.0 / 4.0 - 1.0)
    # weights 1/4, 1/4.5, 1/5: 1/4 < half of the sum, 1/4 + 1/4.5 > half -> p = 4.5 s
    floor = (abs(4.5 / 4 - 1) + 0 + abs(4.5 / 5 - 1)) / 3
    assert g["floor"] == pytest.approx(floor)
    assert g["floor_median"] == pytest.approx(floor)  # the median is 4.5 s too
    assert s["floor"] == pytest.approx(3 * floor / 5)  # the two single rows count 0
    assert s["floor_in_repeat_groups"] == pytest.approx(floor)
    assert s["by_system"] == {"DGX-B200": pytest.approx(3 * floor / 5)}
    assert s["rows_spread_over_10pct"] == 3


def test_floor_on_the_table_and_the_described_floor_is_lower():
    rows = pretrain_rows()
    blind = noise_floor(rows)["summary"]
    described = noise_floor(rows, described_key)["summary"]
    # the described key refines the blind one, so its best constants can only do better
    assert described["descriptions"] >= blind["descriptions"]
    assert 0.0 < described["floor"] <= blind["floor"] < 0.10
    # repeated descriptions are the bulk of the table
    assert blind["rows_in_repeat_groups"] > 0.8 * blind["rows"]


def test_step_time_section_describes_each_row_once(monkeypatch):
    """The section describes a row once and hands that description to the prediction and to the
    described noise floor; the floor is the one ``described_key`` gives row by row."""
    from carbonscaling.validation import throughput

    calls, real = [], throughput.describe_row

    def counting(row):
        calls.append(row)
        return real(row)

    def fake_predict(row, consts=None, description=None):
        assert description is not None  # handed over, not described again
        return {"model": row["model"], "system": row["system"], "precision": row["precision"],
                "error": 0.0, "dense": True}

    monkeypatch.setattr(throughput, "describe_row", counting)
    monkeypatch.setattr(throughput, "predict_row", fake_predict)
    section = throughput.step_time_section()
    rows = pretrain_rows()
    assert len(calls) == len(rows) == section["summary"]["rows"]
    monkeypatch.setattr(throughput, "describe_row", real)
    expressed = [r for r in rows if not _unexpressible(real, r)]
    assert section["summary"]["noise_floor"]["as_described"] == noise_floor(expressed, described_key)["summary"]


def _unexpressible(describe, row) -> bool:
    from carbonscaling.validation.throughput import Unexpressible

    try:
        describe(row)
    except Unexpressible:
        return True
    return False


def test_precomputed_keys_match_the_key_function_and_must_be_one_per_row():
    rows = [_row("25.11", 4.0), _row("26.02", 5.0), _row("26.04", 3.0, mbs="2")]
    assert noise_floor(rows, keys=[description_key(r) for r in rows]) == noise_floor(rows)
    with pytest.raises(ValueError, match="one per row"):
        noise_floor(rows, keys=[description_key(rows[0])])
