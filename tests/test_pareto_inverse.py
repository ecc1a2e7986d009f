"""Pareto fronts and inverse questions (carbonscaling.pareto, carbonscaling.inverse)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import carbonscaling as cs
from carbonscaling.errors import InfeasibleError, InputError
from carbonscaling.inverse import best_loss_within, cleanest_choice, shortest_deadline_within, with_tokens
from carbonscaling.pareto import deadline_front, loss_front, pareto_mask
from carbonscaling.scaling import from_preset


def dominates(a, b) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 3)),
              elements=st.floats(0, 10, allow_nan=False).map(lambda x: round(x, 1))))
def test_front_has_no_dominated_point_and_covers_the_rest(p):
    m = pareto_mask(p)
    front, rest = p[m], p[~m]
    assert m.any()
    assert not any(dominates(a, b) for a in p for b in front)
    assert all(any(dominates(a, b) for a in front) for b in rest)


def test_pareto_mask_by_hand():
    pts = [[1, 5], [2, 2], [5, 1], [3, 3], [2, 2]]
    assert pareto_mask(pts).tolist() == [True, True, True, False, True]
    with pytest.raises(InputError):
        pareto_mask([1, 2, 3])


def test_deadline_front_real_model():
    f = deadline_front("llama2-7b", "H100", deadlines=[3, 7, 30], device_counts=[8, 64, 256])
    rows = f["rows"]
    assert len(rows) >= 5
    pts = np.array([[r[k] for k in f["objectives"]] for r in rows])
    on = np.array([r["on_front"] for r in rows])
    assert on.any()
    assert not any(dominates(a, b) for a in pts for b in pts[on])
    ex = f["extremes"]
    assert ex["fastest"]["duration_days"] == min(r["duration_days"] for r in rows)
    assert ex["least_carbon"]["total_tco2e"] == min(r["total_tco2e"] for r in rows)
    assert ex["fewest_devices"]["devices"] == min(r["devices"] for r in rows)
    assert all(e["on_front"] for e in ex.values())
    # a longer deadline never needs more carbon on the least-carbon search
    dl = sorted((r for r in rows if r["sweep"] == "deadline"), key=lambda r: r["deadline_days"])
    assert dl[-1]["total_tco2e"] <= dl[0]["total_tco2e"] * 1.0001


def test_loss_front_over_preset_widths():
    f = loss_front("cs-v2", "H100", d_models=[1536, 2048, 3072])
    rows = f["rows"]
    assert [r["d_model"] for r in rows] == [1536, 2048, 3072]
    assert all(r["on_front"] for r in rows)  # bigger: lower loss, more carbon
    assert rows[0]["loss"] > rows[1]["loss"] > rows[2]["loss"]
    assert rows[0]["total_tco2e"] < rows[1]["total_tco2e"] < rows[2]["total_tco2e"]


def test_inverse_loss_meets_budget_and_a_slightly_larger_model_does_not():
    budget = 25.0
    res = best_loss_within(budget, "cs-v2", "H100", d_max=4096)
    a = res["answer"]
    assert a["total_tco2e"] <= budget
    # independent check, not the function's own neighbour
    bigger = cs.estimate(preset="cs-v2", d_model=a["d_model"] + 128, device="H100")
    assert bigger.carbon.total_tco2e > budget
    assert res["next"]["d_model"] == a["d_model"] + 128
    assert bigger.model.loss < a["loss"]


def test_inverse_loss_free_tokens_stays_within_budget():
    res = best_loss_within(25.0, "cs-v2", "H100", tokens="free", d_max=4096)
    assert res["answer_free"]["total_tco2e"] <= 25.0
    assert res["answer_free"]["loss"] <= res["answer"]["loss"] + 1e-9
    assert all(r["total_tco2e"] <= 25.0 for r in res["free"])


def test_inverse_loss_budget_too_small_is_infeasible():
    with pytest.raises(InfeasibleError, match="smallest width"):
        best_loss_within(1e-6, "cs-v2", "H100", d_max=2048)
    with pytest.raises(InputError, match="budget"):
        best_loss_within(-1, "cs-v2", "H100")


def test_with_tokens_rescales_the_preset_budget():
    m = from_preset("cs-v2", 4096)
    half = with_tokens(m, m.train_tokens / 2)
    assert half.train_flops == pytest.approx(m.train_flops / 2)
    assert half.train_tokens == pytest.approx(m.train_tokens / 2)
    assert half.loss > m.loss


def test_shortest_deadline_within_budget():
    free = cs.estimate(model="llama2-7b", device="H100", deadline_days=60, objective="carbon").carbon.total_tco2e
    budget = free * 1.05
    res = shortest_deadline_within(budget, "llama2-7b", "H100", lo_days=1, hi_days=60)
    a = res["answer"]
    assert a["total_tco2e"] <= budget and a["deadline_days"] < 60
    s = res["shorter"]
    assert s is None or s.get("total_tco2e", float("inf")) > budget


def test_cleanest_choice_ranks_device_and_region():
    res = cleanest_choice("llama2-7b", deadline_days=30, devices=["H100", "A100-80GB"],
                          regions=["us-east5", "europe-north2", "asia-south1"])
    best = res["best"]
    assert best["region"] == "europe-north2"
    assert best["total_tco2e"] == min(r["total_tco2e"] for r in res["rows"])
    for dev in ("H100", "A100-80GB"):
        rows = [r for r in res["rows"] if r["device"] == dev]
        per_ci = {round(r["operational_tco2e"] / r["ci_g_per_kwh"], 9) for r in rows}
        assert len(per_ci) == 1  # operational carbon is linear in the grid intensity
    direct = cs.estimate(model="llama2-7b", device=best["device"], deadline_days=30, objective="carbon",
                         region="europe-north2")
    assert direct.carbon.total_tco2e == pytest.approx(best["total_tco2e"], rel=0.05)
