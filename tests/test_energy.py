"""Issue 10: measured node power, goodput, allocation, lifetime, scope, carbon objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from carbonscaling import hardware, power
from carbonscaling._data import load_yaml
from carbonscaling.carbon import (
    PAPER_ACCOUNTING,
    carbon_scorer,
    resolve_accounting,
    run_carbon,
)
from carbonscaling.errors import InfeasibleError, InputError
from carbonscaling.goodput import expected_goodput, goodput_terms

DEVICES = ["A100", "H100", "B100", "V100", "TPUv4", "A100-80GB", "H100-SXM", "B200"]


# ---- measured node power -------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(st.sampled_from(DEVICES), st.integers(1, 100_000), st.floats(1e-6, 1.0), st.floats(1e-6, 1.0),
       st.sampled_from(["auto", "air", "liquid"]), st.sampled_from(["share", "node"]),
       st.sampled_from(["measured", "nameplate", "paper"]))
def test_energy_per_device_hour_monotone_in_utilization(dev, n, u1, u2, cooling, allocation, model):
    lo, hi = sorted((u1, u2))
    kw = dict(n_devices=n, duration_h=10.0, pue=1.3, ci=100, cooling=cooling, allocation=allocation,
              power_model=model, goodput=1.0)
    a, b = (run_carbon(None, dev, utilization=u, **kw).breakdown for u in (lo, hi))
    for key in ("node_kwh_per_device_hour", "facility_kwh_per_device_hour", "w_per_device_slot"):
        assert a[key] <= b[key] * (1 + 1e-12)
    assert a["facility_kwh_per_device_hour"] == pytest.approx(1.3 * a["node_kwh_per_device_hour"])


def test_measured_slot_power_by_hand():
    """H100 air-cooled, busy 0.5: TDP (1 x 0.5 + wait x 0.5) + host share, / PSU, x (1 + fans)."""
    c = power.measured_constants()
    s = hardware.load_system("H100-SXM")
    r = run_carbon(None, s, n_devices=8, duration_h=1.0, utilization=0.5, goodput=1.0, pue=1.0, ci=0,
                   include_embodied=False)
    dev = 700 * (0.5 * c["gpu_busy_fraction_of_tdp"] + 0.5 * c["gpu_wait_fraction_of_tdp"])
    host = c["host_fraction_of_node_other"] * s.node_other_power_w / 8
    slot = (dev + host) / c["psu_efficiency"] * (1 + c["air_cooling_fraction_of_it"])
    assert r.breakdown["w_per_device_slot"] == pytest.approx(slot)
    assert r.breakdown["network_power_w_per_device"] == 0  # one node: no switch
    assert r.it_energy_kwh == pytest.approx(8 * slot / 1000)


def test_nameplate_is_an_upper_bound_of_measured():
    for dev in DEVICES:
        for n in (1, 8, 64, 4096):
            kw = dict(n_devices=n, duration_h=5.0, utilization=1.0, goodput=1.0, include_embodied=False)
            m = run_carbon(None, dev, **kw).breakdown["w_per_device_slot"]
            top = run_carbon(None, dev, power_model="nameplate", **kw).breakdown["w_per_device_slot"]
            assert m <= top, (dev, n)


def test_fabric_ports():
    assert power.fabric_ports_per_device(8, 8, 64) == 0
    assert power.fabric_ports_per_device(64, 8, 64) == 1
    assert power.fabric_ports_per_device(2048, 8, 64) == 3
    assert power.fabric_ports_per_device(2049, 8, 64) == 5


def test_fitted_constants_refit_from_mlperf_rows():
    """The three `fitted` constants of power.yaml are what fit_measured_constants gives on the data."""
    fit = power.fit_measured_constants()
    c = power.measured_constants()
    for k, v in fit.items():
        assert load_yaml("power.yaml")["measured"][k]["status"] == "fitted"
        assert c[k] == pytest.approx(v, abs=0.006), k


def test_mlperf_check_within_five_percent_where_busy_is_measured():
    rows = power.mlperf_check()
    assert len(rows) == 8
    for r in rows:
        if r["busy_source"] == "scaling":
            assert abs(r["error"]) < 0.05, r
        assert r["predicted_w"] < r["nameplate_w"]


# ---- goodput ----------------------------------------------------------------------
def test_goodput_by_hand():
    g = goodput_terms(16384, interruptions_per_device_day=5.27e-4, restart_minutes=10, checkpoint_minutes=1,
                      evaluation_fraction=0.0)
    lam = 5.27e-4 * 16384 / 24
    tau = math.sqrt(2 * (1 / 60) / lam)
    assert float(g["goodput"]) == pytest.approx(1 - lam * (10 / 60 + tau / 2) - (1 / 60) / tau)
    assert float(g["goodput"] + g["restart"] + g["rework"] + g["checkpoint"] + g["evaluation"]) == pytest.approx(1)
    assert float(g["mttf_h"]) == pytest.approx(1 / lam)


def test_goodput_falls_with_devices_and_expected_hours_side_by_side():
    assert expected_goodput(8) > expected_goodput(1024) > expected_goodput(16384)
    r = run_carbon(None, "H100", n_devices=4096, duration_h=100, utilization=0.8)
    b = r.breakdown
    assert b["steady_device_hours"] == pytest.approx(4096 * 100)
    assert b["expected_device_hours"] == pytest.approx(4096 * 100 / b["goodput_goodput"])
    assert "goodput" in r.scope
    one = run_carbon(None, "H100", n_devices=4096, duration_h=100, utilization=0.8, goodput=1.0)
    assert one.breakdown["expected_device_hours"] == one.breakdown["steady_device_hours"]
    assert one.operational_tco2e < r.operational_tco2e


def test_goodput_too_low_is_infeasible():
    with pytest.raises(InfeasibleError) as e:
        run_carbon(None, "H100", n_devices=10**7, duration_h=1, utilization=0.5)
    assert e.value.constraint == "goodput"


def test_development_overhead_reported_not_added():
    a = run_carbon(None, "H100", n_devices=64, duration_h=100, utilization=0.8)
    b = run_carbon(None, "H100", n_devices=64, duration_h=100, utilization=0.8, development_overhead=0.5)
    assert b.total_tco2e == a.total_tco2e
    assert b.breakdown["development_tco2e"] == pytest.approx(0.5 * a.total_tco2e)
    assert b.breakdown["development_device_hours"] == pytest.approx(0.5 * a.breakdown["expected_device_hours"])


# ---- allocation --------------------------------------------------------------------
@pytest.mark.parametrize("power_model", ["measured", "nameplate", "paper"])
def test_partial_node_charged_its_share(power_model):
    kw = dict(duration_h=100, utilization=0.7, goodput=1.0, pue=1.0, ci=100, power_model=power_model)
    one = run_carbon(None, "H100", n_devices=1, allocation="share", **kw)
    full = run_carbon(None, "H100", n_devices=8, allocation="share", **kw)
    assert one.total_tco2e == pytest.approx(full.total_tco2e / 8)
    assert one.breakdown["nodes_charged"] == pytest.approx(1 / 8)
    whole = run_carbon(None, "H100", n_devices=1, allocation="node", **kw)
    assert whole.breakdown["nodes_charged"] == 1
    assert whole.total_tco2e > one.total_tco2e
    host = "host" if power_model == "measured" else "node_other"
    assert whole.breakdown[f"{host}_energy_kwh"] == pytest.approx(8 * one.breakdown[f"{host}_energy_kwh"])


def test_default_allocation_is_share():
    r = run_carbon(None, "H100", n_devices=1, duration_h=10, utilization=0.9)
    assert r.breakdown["allocation"] == "share" and "allocation share" in r.scope
    assert r.breakdown["node_kwh_per_device_hour"] < 1.3  # not a whole node's host (issue: 7.7 kWh)


# ---- lifetime ----------------------------------------------------------------------
def test_lifetime_rule():
    kw = dict(n_devices=8, duration_h=7 * 8760, utilization=0.5, lifetime_years=6, goodput=1.0)
    with pytest.raises(InfeasibleError) as e:
        run_carbon(None, "H100", **kw)
    assert e.value.constraint == "lifetime" and "whole_run" in str(e.value)
    once = run_carbon(None, "H100", lifetime_policy="whole_run", **kw)
    assert once.breakdown["amortisation_fraction"] == 1.0
    assert "once" in once.breakdown["lifetime_note"] and "whole_run" in once.scope
    rep = run_carbon(None, "H100", lifetime_policy="replace", **kw)
    assert rep.breakdown["amortisation_fraction"] == pytest.approx(7 / 6)
    assert "replacements" in rep.breakdown["lifetime_note"]
    assert rep.embodied_tco2e == pytest.approx(once.embodied_tco2e * 7 / 6)
    short = run_carbon(None, "H100", **{**kw, "duration_h": 8760})
    assert short.breakdown["lifetime_note"] == "" and short.breakdown["amortisation_fraction"] == pytest.approx(1 / 6)


def test_estimate_caps_deadline_at_lifetime_under_refuse():
    from carbonscaling.chain import estimate

    e = estimate("megatron-1.7b", "H100", deadline_days=36500)
    assert e.settings["deadline_days"] == pytest.approx(6 * 365)
    assert e.carbon.breakdown["expected_duration_h"] <= 6 * 8760


# ---- scorer == accounting; carbon objective never above fastest ---------------------------
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(DEVICES), st.integers(1, 20_000), st.floats(1.0, 1e5), st.floats(0.01, 1.0),
       st.sampled_from(["share", "node"]), st.sampled_from(["measured", "nameplate", "paper"]),
       st.sampled_from(["refuse", "whole_run", "replace"]))
def test_scorer_matches_run_carbon(dev, n, hours, util, allocation, model, policy):
    kw = dict(allocation=allocation, power_model=model, lifetime_policy=policy)
    system = hardware.load_system(dev)
    score = carbon_scorer(system, resolve_accounting(**kw))(np.array([n]), np.array([hours * 3600.0]),
                                                             np.array([util]))[0]
    try:
        r = run_carbon(None, system, n_devices=n, duration_h=hours, utilization=util, **kw)
    except InfeasibleError:
        assert score == np.inf
        return
    assert score == pytest.approx(r.total_tco2e, rel=1e-9)


CASES = st.fixed_dictionaries({
    "preset": st.sampled_from(["cs-v1"]),
    "d_model": st.sampled_from([1024, 2048, 3072, 4096]),
    "device": st.sampled_from(["A100", "H100", "TPUv4", "V100", "B100"]),
    "deadline_days": st.sampled_from([3.0, 10.0, 30.0, 90.0]),
    "allocation": st.sampled_from(["share", "node"]),
    "power_model": st.sampled_from(["measured", "paper"]),
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CASES)
def test_carbon_objective_never_above_fastest(case):
    from carbonscaling.chain import estimate

    kw = dict(case)
    try:
        fast = estimate(**kw, objective="fastest", median_carbon=False)
        green = estimate(**kw, objective="carbon", median_carbon=False)
    except InfeasibleError:
        assume(False)
    assert green.carbon.total_tco2e <= fast.carbon.total_tco2e * (1 + 1e-9)


def test_issue_case_tpuv3_carbon_not_above_fastest():
    from carbonscaling.chain import estimate

    for allocation in ("share", "node"):
        kw = dict(model="megatron-39.1b", device="TPUv3", deadline_days=30, allocation=allocation, median_carbon=False)
        fast, green = estimate(**kw, objective="fastest"), estimate(**kw, objective="carbon")
        assert green.carbon.total_tco2e <= fast.carbon.total_tco2e * (1 + 1e-9)


# ---- settings and scope --------------------------------------------------------------
def test_paper_options_need_paper_model():
    with pytest.raises(InputError, match="power_split"):
        run_carbon(None, "H100", n_devices=8, duration_h=1, utilization=0.5, power_split="low_static")
    r = run_carbon(None, "H100", n_devices=8, duration_h=1, utilization=0.5, power_split="low_static",
                   **PAPER_ACCOUNTING)
    assert r.breakdown["p_static_w"] == pytest.approx(0.158 * 700)


@pytest.mark.parametrize("kw, words", [
    (dict(), ["device", "host", "power supplies", "server fans", "PUE", "embodied paper", "goodput"]),
    (dict(cooling="liquid", n_devices=4), ["device", "host", "power supplies"]),
    (dict(include_embodied=False), ["no embodied"]),
    (PAPER_ACCOUNTING, ["device (static)", "node beyond devices", "steady state"]),
])
def test_scope_names_terms(kw, words):
    args = {"n_devices": 64, "duration_h": 10, "utilization": 0.5, **kw}
    r = run_carbon(None, "H100", **args)
    for w in words:
        assert w in r.scope, (w, r.scope)
    if args.get("cooling") == "liquid":
        assert "fans" not in r.scope and "switches" not in r.scope


def test_bloom_published_scope_and_full_scope():
    from carbonscaling.validation.energy import scope_rows
    from carbonscaling.validation.runs import load_runs

    bloom = next(r for r in load_runs() if r.run_id == "bloom_176b")
    rows = scope_rows(bloom, busy=0.8)
    assert rows[1]["operational_tco2e"] == pytest.approx(24.69, abs=0.01)  # TDP x GPU-h x 57 g
    assert rows[2]["operational_tco2e"] > rows[1]["operational_tco2e"]
    assert "host" in rows[2]["scope"] and "PUE" in rows[2]["scope"]


def test_estimate_cli_says_deadline_capped_and_scope(capsys):
    from carbonscaling.cli import main

    try:
        main(["estimate", "--model", "megatron-1.7b", "--deadline-days", "36500", "--no-uncertainty"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "capped at the hardware lifetime" in out and "scope: operational: device, host" in out
    assert "steady state / expected (goodput)" in out and "kWh per device-hour" in out
