"""Monte-Carlo uncertainty (carbonscaling.uncertainty): bands, reproducibility, widening, physics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling.carbon import run_carbon
from carbonscaling.errors import InputError
from carbonscaling.uncertainty import (RESPONSE_INPUTS, base_point, load_inputs, propagate, quantile, region_year_ratios,
                                       residuals, response, step_time_residuals, widen)

BANDED = ("energy_kwh", "operational_tco2e", "total_tco2e")


def run(**kw):
    args = dict(n_devices=16384, duration_h=54 * 24, utilization=0.38, ci="us-east5")
    args.update(kw)
    return run_carbon(None, "H100", **args)


def width(u, q="total_tco2e"):
    return u.bands[q]["p95"] - u.bands[q]["p5"]


def test_response_at_the_point_is_the_carbon_model():
    c = run(pue=1.2, lifetime_years=5)
    out = response(base_point(c), {})
    assert out["total_tco2e"] == pytest.approx(c.total_tco2e, rel=1e-12)
    assert out["energy_kwh"] == pytest.approx(c.energy_kwh, rel=1e-12)
    assert out["embodied_tco2e"] == pytest.approx(c.embodied_tco2e, rel=1e-12)


def test_slower_steps_add_static_time_but_not_dynamic_energy():
    from carbonscaling.carbon import PAPER_ACCOUNTING

    c = run(**PAPER_ACCOUNTING)
    b = c.breakdown
    base = base_point(c)
    slow = response(base, {"step_time": 1.25})
    # By hand: static, node-other and network energy x1.25; dynamic (same work at lower U) unchanged.
    expect_it = (1.25 * (b["device_static_energy_kwh"] + b["node_other_energy_kwh"] + b["network_energy_kwh"])
                 + b["device_dynamic_energy_kwh"])
    assert slow["energy_kwh"] == pytest.approx(expect_it * b["pue"], rel=1e-12)
    assert slow["embodied_tco2e"] == pytest.approx(1.25 * c.embodied_tco2e, rel=1e-12)


def test_bands_contain_the_point_for_llama_405b_scale_run():
    u = propagate(run(), seed=3)
    for q in BANDED:
        assert u.bands[q]["p5"] < u.point[q] < u.bands[q]["p95"], q
        assert u.bands[q]["p5"] < u.bands[q]["p50"] < u.bands[q]["p95"]


@settings(max_examples=25, deadline=None)
@given(devices=st.integers(8, 20000), days=st.floats(1, 200), util=st.floats(0.2, 0.6),
       pue=st.floats(1.05, 1.5), ci=st.floats(50, 800), seed=st.integers(0, 2**31))
def test_total_band_contains_the_point(devices, days, util, pue, ci, seed):
    u = propagate(run(n_devices=devices, duration_h=days * 24, utilization=util, pue=pue, ci=ci), samples=2048,
                  seed=seed)
    for q in BANDED:
        assert u.bands[q]["p5"] <= u.point[q] <= u.bands[q]["p95"], q


def test_reproducible_for_a_seed_and_different_across_seeds():
    c = run()
    a, b = propagate(c, seed=7), propagate(c, seed=7)
    assert a.bands == b.bands and a.sensitivity == b.sensitivity
    assert propagate(c, seed=8).bands["total_tco2e"] != a.bands["total_tco2e"]


@pytest.mark.parametrize("name,quantity", [("pue", "total_tco2e"), ("grid_intensity", "operational_tco2e"),
                                           ("step_time", "total_tco2e"), ("device_embodied_kg", "embodied_tco2e"),
                                           ("lifetime_years", "embodied_tco2e"), ("it_power", "energy_kwh")])
def test_bands_widen_when_an_input_range_widens(name, quantity):
    c = run()
    specs = load_inputs()
    narrow = propagate(c, seed=1, inputs=specs)
    wide = propagate(c, seed=1, inputs=widen(specs, name, 3.0))
    assert width(wide, quantity) > width(narrow, quantity) * 1.02


def test_only_the_declared_inputs_move_the_result():
    c = run()
    one = propagate(c, seed=1, inputs={"pue": load_inputs()["pue"]})
    assert [s["input"] for s in one.sensitivity] == ["pue"]
    assert one.bands["embodied_tco2e"]["p5"] == pytest.approx(c.embodied_tco2e)
    assert one.bands["embodied_tco2e"]["p95"] == pytest.approx(c.embodied_tco2e)


def test_sensitivity_is_sorted_and_the_grid_and_step_time_swings_by_hand():
    c = run()
    u = propagate(c, seed=0)
    swings = [s["swing_tco2e"] for s in u.sensitivity]
    assert swings == sorted(swings, reverse=True)
    # By hand: the grid factor multiplies operational carbon only; under the measured power model (no
    # static/dynamic split) every term grows with wall clock, so the step-time factor multiplies the total.
    # Each at the 5th / 95th percentile of its own table (step time: the H100's rows).
    specs = load_inputs()
    q = lambda tab: np.quantile(tab, [0.05, 0.95], method="inverted_cdf")  # noqa: E731
    grid_lo, grid_hi = q(region_year_ratios())
    st_lo, st_hi = q(residuals("step_time_residuals", "device", specs["step_time"].params["aliases"]["H100"]))
    by_name = {s["input"]: s["swing_tco2e"] for s in u.sensitivity}
    assert by_name["grid_intensity"] == pytest.approx(c.operational_tco2e * (grid_hi - grid_lo), rel=1e-9)
    assert by_name["step_time"] == pytest.approx(c.total_tco2e * (st_hi - st_lo), rel=1e-9)
    # The default (measured) power model has no static/dynamic split: dynamic_fraction is not sampled.
    generic = {"network_power", "host_power", "cooling_power"}  # factors on named energy terms
    assert {s["input"] for s in u.sensitivity} == (set(RESPONSE_INPUTS) | generic) - {"dynamic_fraction"}
    from carbonscaling.carbon import PAPER_ACCOUNTING

    # the paper power model has a split but no host/cooling terms
    paper = propagate(run(**PAPER_ACCOUNTING), seed=0)
    assert {s["input"] for s in paper.sensitivity} == set(RESPONSE_INPUTS) | {"network_power"}


def test_quantiles_match_samples():
    specs = load_inputs()
    rng = np.random.default_rng(0)
    from carbonscaling.uncertainty import draw
    for name, point in (("pue", 1.1), ("lifetime_years", 6.0), ("device_embodied_kg", 169.0), ("grid_intensity", 1.0)):
        x = draw(specs[name], point, 200_000, rng)
        for q in (0.05, 0.95):
            assert quantile(specs[name], point, q) == pytest.approx(np.quantile(x, q), rel=0.02), (name, q)


def test_empirical_tables_come_from_the_shipped_data():
    r = region_year_ratios()
    assert len(r) > 50 and 0.3 < r.min() < 1 < r.max() < 3
    s = step_time_residuals()
    assert len(s) >= 10 and np.all((s > 0.2) & (s < 5))


def test_bad_input_is_one_named_error(tmp_path):
    c = run()
    with pytest.raises(InputError, match="samples"):
        propagate(c, samples=3)
    with pytest.raises(InputError, match="seed"):
        propagate(c, seed=-1)
    f = tmp_path / "u.yaml"
    f.write_text("inputs:\n  moon_phase: {kind: factor, distribution: uniform, low: 0.9, high: 1.1}\n")
    with pytest.raises(InputError, match="moon_phase"):
        load_inputs(f)
    f.write_text("inputs:\n  pue: {kind: factor, distribution: gaussian}\n")
    with pytest.raises(InputError, match="distribution"):
        load_inputs(f)


def test_user_file_with_one_wider_input(tmp_path):
    f = tmp_path / "u.yaml"
    f.write_text("inputs:\n  pue: {kind: value, distribution: uniform, low: 1.0, high: 2.0}\n")
    u = propagate(run(pue=1.1), seed=0, inputs=load_inputs(f))
    assert u.inputs["pue"]["distribution"] == "uniform"
    assert u.bands["total_tco2e"]["p95"] > 1.5 * u.point["total_tco2e"]


def test_no_embodied_run_has_zero_embodied_band():
    u = propagate(run(include_embodied=False), seed=0)
    assert u.bands["embodied_tco2e"]["p95"] == 0.0
    assert all(not s["input"].startswith(("device_emb", "host_emb", "infra", "lifetime")) for s in u.sensitivity)
    assert math.isfinite(u.bands["total_tco2e"]["p50"])


def test_power_model_without_a_split_scales_all_energy_with_time():
    from dataclasses import replace
    c = run()
    b = {k: v for k, v in c.breakdown.items() if k != "p_dynamic_w"}
    c2 = replace(c, breakdown=b)
    base = base_point(c2)
    assert response(base, {})["total_tco2e"] == pytest.approx(c.total_tco2e, rel=1e-12)
    assert response(base, {"step_time": 1.25})["energy_kwh"] == pytest.approx(1.25 * c.energy_kwh, rel=1e-12)
    assert "dynamic_fraction" not in {s["input"] for s in propagate(c2, samples=256).sensitivity}


def test_a_modelled_goodput_is_the_mode_of_its_spread():
    from dataclasses import replace
    c = run()
    c2 = replace(c, breakdown={**c.breakdown, "goodput_goodput": 0.9})
    u = propagate(c2, samples=4096, seed=0)
    assert u.inputs["goodput"]["point"] == 0.9
    assert response(base_point(c2), {})["total_tco2e"] == pytest.approx(c.total_tco2e, rel=1e-12)


def test_a_new_input_is_one_entry_scaling_named_energy_terms(tmp_path):
    c = run()
    f = tmp_path / "u.yaml"
    f.write_text("inputs:\n  network_power: {kind: factor, distribution: uniform, low: 0.0, high: 3.0, "
                 "scales: [network]}\n")
    u = propagate(c, seed=0, inputs=load_inputs(f), samples=4096)
    net = c.breakdown["network_energy_kwh"] * c.breakdown["pue"]
    assert u.bands["energy_kwh"]["p95"] - u.bands["energy_kwh"]["p5"] == pytest.approx(0.9 * 3.0 * net, rel=0.05)
    assert u.bands["embodied_tco2e"]["p95"] == pytest.approx(c.embodied_tco2e)
    f.write_text("inputs:\n  fans: {kind: factor, distribution: uniform, low: 0.5, high: 2, scales: [fans]}\n")
    assert propagate(c, inputs=load_inputs(f), samples=64).sensitivity == []  # no 'fans' term in this model
    f.write_text("inputs:\n  fans: {kind: value, distribution: uniform, low: 0.5, high: 2}\n")
    with pytest.raises(InputError, match="scales"):
        load_inputs(f)


def test_measured_power_model_uses_its_own_residuals_and_goodput():
    from carbonscaling.carbon import PAPER_ACCOUNTING
    from carbonscaling.uncertainty import power_residuals
    c = run()
    u = propagate(c, seed=0)
    g0 = c.breakdown["goodput_goodput"]
    assert u.inputs["goodput"]["point"] == pytest.approx(g0) and g0 < 1
    gp = next(r for r in u.sensitivity if r["input"] == "goodput")
    assert 0.9 * g0 - 1e-9 <= gp["low_value"] <= g0 <= gp["high_value"] <= min(1.0, 1.1 * g0) + 1e-9
    it = next(r for r in u.sensitivity if r["input"] == "it_power")
    assert power_residuals().min() <= it["low_value"] <= it["high_value"] <= power_residuals().max()
    paper = propagate(run(**PAPER_ACCOUNTING), seed=0)
    it_p = next(r for r in paper.sensitivity if r["input"] == "it_power")
    assert it_p["high_value"] > power_residuals().max()  # the triangular +-17 % prior for other power models
