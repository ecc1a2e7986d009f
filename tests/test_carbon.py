"""Carbon model (carbonscaling.carbon): formulas, region table, validation, invariants."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from carbonscaling import hardware
from carbonscaling.carbon import (
    PAPER_ACCOUNTING,
    CarbonResult,
    embodied_terms,
    grid_intensity,
    ideal_carbon,
    power_split,
    region_table,
    resolve_grid_intensity,
    run_carbon,
)
from carbonscaling.errors import InfeasibleError, InputError, UnknownNameError

BLOOM = dict(n_devices=384, device_hours=1_082_990, utilization=0.3, pue=1.2, ci=57)


def bloom(**kw):
    return run_carbon(None, "A100-80GB", **{**BLOOM, **kw})


def bloom_paper(**kw):
    """BLOOM under the papers' accounting (static + dynamic x U, whole nodes, steady state)."""
    return bloom(**{**PAPER_ACCOUNTING, **kw})


# ---- grid intensity ----------------------------------------------------------------
@pytest.mark.parametrize("region, ci", [("us-east5", 323.05), ("asia-south1", 678.76), ("europe-north2", 2.73),
                                        ("US-EAST5", 323.05)])
def test_v2_regions_2024(region, ci):
    assert grid_intensity(region) == ci
    assert grid_intensity(region, 2024) == ci


def test_v1_default_is_europe_north1_2021():
    assert grid_intensity("europe-north1", 2021) == 127


def test_numbers_and_numeric_strings():
    assert grid_intensity(57) == 57.0
    assert grid_intensity("57.5") == 57.5
    assert resolve_grid_intensity(0)[0] == 0.0
    assert resolve_grid_intensity(None)[0] == 323.05  # power.yaml default


def test_region_table_has_all_years_and_sources():
    for year in (2021, 2022, 2023, 2024):
        rows = region_table(year)
        assert len(rows) > 30
        assert all(str(year) in r["source"] and "Google" in r["source"] for r in rows)
        assert all(0 <= r["ci_g_per_kwh"] <= 2000 for r in rows)
    assert region_table()[0]["year"] == 2024


def test_unknown_region_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'us-east5'"):
        grid_intensity("us-eats5")


def test_region_missing_in_year():
    with pytest.raises(InputError) as e:
        grid_intensity("europe-north2", 2021)
    assert e.value.field == "year" and "2024" in e.value.message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, 2000.5, 1e30, "nan", True, [1]])
def test_bad_numeric_ci(bad):
    with pytest.raises(InputError) as e:
        grid_intensity(bad)
    assert e.value.field in {"ci", "region"}


def test_bad_year():
    with pytest.raises(InputError, match="year"):
        grid_intensity("us-east5", 2019)


def test_country_without_codecarbon(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    monkeypatch.setitem(sys.modules, "codecarbon.input", None)
    with pytest.raises(InputError, match=r"pip install carbonscaling\[countries\]"):
        grid_intensity("FRA")


def test_country_with_codecarbon():
    pytest.importorskip("codecarbon")
    ci, src = resolve_grid_intensity("FRA")
    assert 0 < ci < 200 and "FRA" in src
    assert grid_intensity("country:France") == ci
    with pytest.raises(UnknownNameError):
        grid_intensity("XXZ")


# ---- power split and operational formula -------------------------------------------
def test_power_split():
    s, d = power_split(400.0)
    assert d == pytest.approx(0.158 * 400) and s + d == pytest.approx(400)
    s2, d2 = power_split(400.0, "low_static")
    assert (s2, d2) == pytest.approx((d, s))
    with pytest.raises(InputError, match="power_split"):
        power_split(400.0, "high")


def test_operational_formula_by_hand():
    r = run_carbon(None, "H100", n_devices=12, duration_h=10, utilization=0.5, pue=1.1, ci=100,
                   include_embodied=False, **PAPER_ACCOUNTING)
    sys_ = hardware.load_system("H100")
    p_dyn = 0.158 * 700
    dev_w = (700 - p_dyn) + p_dyn * 0.5
    nodes = 2  # ceil(12 / 8)
    other_w = nodes * sys_.node_other_power_w + 12 * sys_.network_power_w_per_device
    assert r.breakdown["n_nodes"] == nodes
    assert r.device_energy_kwh == pytest.approx(12 * 10 * dev_w / 1000)
    assert r.other_energy_kwh == pytest.approx(10 * other_w / 1000)
    assert r.energy_kwh == pytest.approx(1.1 * r.it_energy_kwh)
    assert r.operational_tco2e == pytest.approx(r.energy_kwh * 100 / 1e6)
    assert r.embodied_tco2e == 0 and r.embodied_mode == "none"


def test_alpha_scales_dynamic_only():
    a = bloom_paper(alpha=1.0).breakdown
    b = bloom_paper(alpha=2.0).breakdown
    assert b["device_dynamic_tco2e"] == pytest.approx(2 * a["device_dynamic_tco2e"])
    assert b["device_static_tco2e"] == a["device_static_tco2e"]


def test_device_hours_equals_devices_times_duration():
    a = bloom()
    b = run_carbon(None, "A100-80GB", n_devices=384, duration_h=1_082_990 / 384, utilization=0.3, pue=1.2, ci=57)
    assert a.total_tco2e == pytest.approx(b.total_tco2e)
    assert a.breakdown["duration_h"] == pytest.approx(b.breakdown["duration_h"])


def test_bloom_dynamic_figure_at_tdp():
    """BLOOM's 24.69 t = 1,082,990 GPU-h x 0.4 kW x 57 g: our device term at U = 1, PUE = 1."""
    b = bloom_paper(utilization=1.0, pue=1.0).breakdown
    assert b["device_static_tco2e"] + b["device_dynamic_tco2e"] == pytest.approx(24.69, abs=0.005)


# ---- embodied ----------------------------------------------------------------------
def test_embodied_paper_by_hand():
    sys_ = hardware.load_system("A100-80GB")
    dur = 2000.0
    e = embodied_terms(sys_, 16, dur, lifetime_years=5, mode="paper", infrastructure=False)
    frac = dur / (5 * 8760)
    dev_kg = 8.26 * 1.6 + 80 * 1.85
    node_kg = 1.47 * 1.6 + 256 * 0.4 + 32768 * 0.018
    assert e["embodied_tco2e"] == pytest.approx((16 * dev_kg + 2 * node_kg) * frac / 1000)
    assert e["embodied_die_tco2e"] == pytest.approx(16 * 8.26 * 1.6 * frac / 1000)
    assert e["embodied_infrastructure_tco2e"] == 0


def test_infrastructure_share_reported_separately():
    with_i, without = bloom(infrastructure=True), bloom(infrastructure=False)
    b = with_i.breakdown
    assert b["embodied_infrastructure_tco2e"] == pytest.approx(0.15 * b["embodied_manufacturing_tco2e"])
    assert with_i.embodied_tco2e == pytest.approx(without.embodied_tco2e * 1.15)
    assert with_i.operational_tco2e == without.operational_tco2e


def test_vendor_mode_and_band():
    v = bloom(embodied_mode="vendor")
    assert v.embodied_mode == "vendor" and "164" in v.embodied_source
    assert v.breakdown["device_embodied_kg"] == 164
    assert v.breakdown["embodied_accelerator_tco2e"] == pytest.approx(384 * 164 * v.breakdown["amortisation_fraction"] / 1000)
    for r in (v, bloom()):
        assert r.embodied_low_tco2e <= r.embodied_tco2e <= r.embodied_high_tco2e
        assert r.total_low_tco2e <= r.total_tco2e <= r.total_high_tco2e
    assert bloom(embodied_mode="vendor", vendor_kg_per_device=300).breakdown["device_embodied_kg"] == 300


def test_lifetime_amortises():
    assert bloom(lifetime_years=3).embodied_tco2e == pytest.approx(2 * bloom(lifetime_years=6).embodied_tco2e)


# ---- result type ---------------------------------------------------------------------
def test_result_is_frozen_and_serialisable():
    r = bloom_paper()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.total_tco2e = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.breakdown["pue"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        r.breakdown.update(pue=2)  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(r)) == r and copy.deepcopy(r) == r
    assert dataclasses.asdict(r)["breakdown"] == dict(r.breakdown)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    for key in ("energy_kwh", "operational_tco2e", "embodied_tco2e", "total_tco2e", "breakdown"):
        assert key in d
    for key in ("device_static_tco2e", "device_dynamic_tco2e", "node_other_tco2e", "network_tco2e",
                "embodied_die_tco2e", "embodied_hbm_tco2e", "embodied_cpu_tco2e", "embodied_dram_tco2e",
                "embodied_ssd_tco2e", "embodied_infrastructure_tco2e", "p_static_w", "p_dynamic_w", "n_nodes",
                "n_devices", "pue", "ci_g_per_kwh", "lifetime_years"):
        assert key in d["breakdown"], key
    row = r.to_row()
    assert not any(isinstance(v, (dict, list)) for v in row.values())
    assert row["total_tco2e"] == r.total_tco2e and row["n_nodes"] == 48
    m = bloom().to_dict()
    for key in ("device_tco2e", "host_tco2e", "power_conversion_tco2e", "cooling_tco2e", "network_tco2e",
                "w_per_device_slot", "node_kwh_per_device_hour", "facility_kwh_per_device_hour",
                "steady_device_hours", "expected_device_hours", "goodput_goodput"):
        assert key in m["breakdown"], key
    assert "scope" in m and "PUE 1.2" in m["scope"] and "embodied" in m["scope"]


def test_model_is_optional_and_reported():
    assert bloom().breakdown["model"] is None
    try:
        r = run_carbon("bloom-176b", "A100-80GB", **BLOOM)
    except (InputError, FileNotFoundError):
        pytest.skip("model catalog not available")
    assert r.breakdown["model"] == "bloom-176b"


# ---- ideal -----------------------------------------------------------------------
def test_ideal_carbon():
    peak, tdp = 312e12, 400.0
    c = peak * 90 * 86400 * 2.5  # 2.5 device-deadlines of compute -> 3 devices
    r = ideal_carbon(c, "A100", pue=1.1, ci=100)
    assert r.breakdown["n_devices"] == 3
    assert r.it_energy_kwh == pytest.approx(c / peak * tdp / 3.6e6)
    assert r.operational_tco2e == pytest.approx(r.it_energy_kwh * 1.1 * 100 / 1e6)
    assert r.embodied_tco2e == 0 and r.total_tco2e == r.operational_tco2e
    assert r.breakdown["duration_h"] <= 90 * 24
    assert ideal_carbon(peak * 90 * 86400, "A100").breakdown["n_devices"] == 1
    with pytest.raises(InputError, match="train_flops"):
        ideal_carbon(float("nan"), "A100")
    with pytest.raises(InputError, match="deadline_days"):
        ideal_carbon(1e23, "A100", deadline_days=0)


# ---- validation ----------------------------------------------------------------------
BAD = [
    ("n_devices", dict(n_devices=0)), ("n_devices", dict(n_devices=-3)), ("n_devices", dict(n_devices=2.5)),
    ("n_devices", dict(n_devices=float("nan"))), ("n_devices", dict(n_devices=1e30)),
    ("n_devices", dict(n_devices=True)), ("utilization", dict(utilization=0)),
    ("utilization", dict(utilization=1.5)), ("utilization", dict(utilization=float("inf"))),
    ("pue", dict(pue=0.5)), ("pue", dict(pue=float("nan"))), ("lifetime_years", dict(lifetime_years=0)),
    ("lifetime_years", dict(lifetime_years=51)), ("ci", dict(ci=-1)), ("ci", dict(ci=1e30)),
    ("region", dict(ci="mars-north1")), ("alpha", dict(alpha=-1, power_model="paper")),
    ("alpha", dict(alpha=2)), ("power_split", dict(power_split="low_static")),
    ("power_model", dict(power_model="tdp")), ("allocation", dict(allocation="half")),
    ("lifetime_policy", dict(lifetime_policy="ignore")), ("cooling", dict(cooling="oil")),
    ("goodput", dict(goodput=0)), ("goodput", dict(goodput=1.5)),
    ("interruptions_per_device_day", dict(interruptions_per_device_day=-1)), ("device_hours", dict(device_hours=0)),
    ("device_hours", dict(device_hours=1e30)), ("duration_h", dict(duration_h=10)),
    ("duration_h", dict(device_hours=None)), ("power_split", dict(power_split="high", power_model="paper")),
    ("embodied_mode", dict(embodied_mode="lca")), ("vendor_kg_per_device", dict(vendor_kg_per_device=-1)),
    ("infrastructure", dict(infrastructure="yes")), ("year", dict(ci="us-east5", year=1999)),
]


@pytest.mark.parametrize("field, override", BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_api_rejects_bad_input(field, override):
    with pytest.raises(InputError) as e:
        bloom(**override)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_api_unknown_device_and_model():
    with pytest.raises(UnknownNameError, match="did you mean 'A100-80GB'"):
        run_carbon(None, "A100-80G", **BLOOM)
    with pytest.raises(InputError):
        run_carbon("no-such-model-xyz", "A100", **BLOOM)


# ---- invariants --------------------------------------------------------------------
DEVICES = ["A100", "H100", "B100", "V100", "TPUv4", "A100-80GB"]
cases = st.fixed_dictionaries({
    "system": st.sampled_from(DEVICES),
    "n_devices": st.integers(1, 20_000),
    "duration_h": st.floats(1e-3, 1e5),
    "utilization": st.floats(1e-4, 1.0),
    "pue": st.floats(1.0, 3.0),
    "ci": st.floats(0.0, 2000.0),
    "lifetime_years": st.floats(0.1, 50),
    "power_split": st.sampled_from(["default"]),
    "embodied_mode": st.sampled_from(["paper", "vendor"]),
    "infrastructure": st.booleans(),
    "power_model": st.sampled_from(["measured", "nameplate", "paper"]),
    "allocation": st.sampled_from(["share", "node"]),
    "lifetime_policy": st.sampled_from(["whole_run", "replace"]),
    "cooling": st.sampled_from(["air", "liquid"]),
})


def _run(kw) -> CarbonResult:
    kw = dict(kw)
    try:
        return run_carbon(None, kw.pop("system"), **kw)
    except InfeasibleError:  # interruptions leave no progress at this device count: an answer, not a number
        assume(False)


def _le(a: float, b: float) -> bool:
    return a <= b * (1 + 1e-12) + 1e-15


@settings(max_examples=60, deadline=None)
@given(cases)
def test_total_is_sum_and_finite(kw):
    r = _run(kw)
    assert r.total_tco2e == pytest.approx(r.operational_tco2e + r.embodied_tco2e, rel=1e-12)
    assert r.energy_kwh == pytest.approx(r.it_energy_kwh * kw["pue"], rel=1e-12)
    vals = [v for v in r.to_row().values() if isinstance(v, float)]
    assert all(math.isfinite(v) and v >= 0 for v in vals)
    assert r.to_dict() == _run(kw).to_dict()  # deterministic


@settings(max_examples=40, deadline=None)
@given(cases, st.sampled_from(["ci", "pue", "duration_h", "n_devices", "utilization"]), st.floats(1.0, 50.0))
def test_monotone(kw, field, factor):
    hi = {"ci": 2000.0, "pue": 3.0, "duration_h": 1e6, "n_devices": 10**8, "utilization": 1.0}[field]
    bigger = min(kw[field] * factor, hi)
    if field == "n_devices":
        bigger = int(bigger)
    lo, up = _run(kw), _run({**kw, field: bigger})
    assert _le(lo.total_tco2e, up.total_tco2e)
    assert _le(lo.operational_tco2e, up.operational_tco2e)
    assert _le(lo.embodied_tco2e, up.embodied_tco2e)


@pytest.mark.parametrize("name", hardware.device_names())
def test_project_zero_is_identity_and_continuous(name):
    # project(s, 0) returns s itself, so comparing carbon of both (the old test) could not
    # fail; what can: the compounding formula at a vanishing horizon must meet that shortcut.
    s = hardware.load_system(name)
    assert hardware.project(s, 0) == s
    near = hardware.project(s, 1e-9)
    kw = dict(n_devices=8, duration_h=100, utilization=0.5)
    a, b = run_carbon(None, s, **kw), run_carbon(None, near, **kw)
    for k in ("operational_tco2e", "embodied_tco2e", "total_tco2e", "energy_kwh"):
        assert getattr(b, k) == pytest.approx(getattr(a, k), rel=1e-6), k
    assert near.device.peak_tflops == pytest.approx(s.device.peak_tflops, rel=1e-8)


def test_project_compounds_v1_table1_rates_by_hand():
    # CarbonScaling v1 Table 1: throughput x1.3/yr, SRAM x1.4, power x1.03, die area x1.05,
    # HBM bandwidth x1.25, capacity x1.24, NVLink x1.11 (scale-out follows NVLink)
    s = hardware.load_system("H100")
    d, p = s.device, hardware.project(s, 2, cpa_growth_per_year=0.10)
    q = p.device
    for field, rate in (("peak_tflops", 1.3), ("sram_mb", 1.4), ("tdp_w", 1.03), ("die_area_mm2", 1.05),
                        ("hbm_gb_s", 1.25), ("hbm_gb", 1.24), ("scale_up_gb_s", 1.11)):
        assert getattr(q, field) == pytest.approx(getattr(d, field) * rate ** 2, rel=1e-9), field
    assert p.scale_out_gbit_s == pytest.approx(s.scale_out_gbit_s * 1.11 ** 2, rel=1e-9)
    assert hardware.project(s, 2, scale_out_rate=1.5).scale_out_gbit_s == pytest.approx(s.scale_out_gbit_s * 2.25)
    assert q.cpa_logic_kg_per_cm2 == pytest.approx(hardware.logic_cpa(d) * 1.21, rel=1e-9)
    assert q.cpa_hbm_kg_per_gb == pytest.approx(hardware.hbm_cpa(d) * 1.21, rel=1e-9)
    assert q.years_ahead == d.years_ahead + 2
