"""Carbon terms against hand calculations: the papers' power model, embodied items, the ideal
curve, allocation and lifetime policies, and the input bounds of :func:`run_carbon`.

World constants are typed here from their sources (0.158 TDP dynamic share: Fernandez et
al. 2024; 8,760 h a year); device and system values are the catalog's inputs.
"""

from __future__ import annotations

import math

import pytest

from carbonscaling import hardware
from carbonscaling._data import load_yaml
from carbonscaling.carbon import carbon_scorer, embodied_kg, ideal_carbon, power_split, run_carbon
from carbonscaling.carbon_settings import resolve_accounting
from carbonscaling.errors import InfeasibleError, InputError

H100 = hardware.load_system("H100")
D = H100.device
INFRA = float(load_yaml("embodied.yaml")["infrastructure"]["fraction_of_manufacturing"])
PAPER = dict(power_model="paper", pue=1.2, ci=400.0, goodput=1.0, lifetime_years=5.0, allocation="node",
             lifetime_policy="replace", embodied_mode="paper")


def test_power_split_fernandez():
    assert power_split(700.0) == pytest.approx((700 * (1 - 0.158), 700 * 0.158))
    assert power_split(700.0, "low_static") == pytest.approx((700 * 0.158, 700 * (1 - 0.158)))


def _paper_hand(n, hours, mfu, alpha=1.0):
    static, dyn = D.tdp_w * (1 - 0.158), D.tdp_w * 0.158
    nodes = math.ceil(n / 8)
    per_device_w = static + alpha * dyn * mfu + H100.node_other_power_w * nodes / n + H100.network_power_w_per_device
    it_kwh = n * hours * per_device_w / 1000
    return it_kwh, it_kwh * 1.2 * 400 / 1e6


@pytest.mark.parametrize("n,hours,mfu", [(16, 100.0, 0.5), (12, 30.0, 0.35), (1, 1.0, 1.0)])
def test_paper_power_model_by_hand(n, hours, mfu):
    r = run_carbon(None, "H100", n_devices=n, duration_h=hours, utilization=mfu, **PAPER)
    it_kwh, op = _paper_hand(n, hours, mfu)
    assert r.it_energy_kwh == pytest.approx(it_kwh, rel=1e-12)
    assert r.energy_kwh == pytest.approx(it_kwh * 1.2, rel=1e-12)
    assert r.operational_tco2e == pytest.approx(op, rel=1e-12)
    dev_kwh = n * hours * (D.tdp_w * (1 - 0.158) + D.tdp_w * 0.158 * mfu) / 1000
    assert r.device_energy_kwh == pytest.approx(dev_kwh, rel=1e-12)
    assert r.other_energy_kwh == pytest.approx(it_kwh - dev_kwh, rel=1e-12)
    b = r.breakdown
    assert b["n_nodes"] == math.ceil(n / 8) and b["device_hours"] == pytest.approx(n * hours)
    assert b["p_static_w"] == pytest.approx(D.tdp_w * 0.842) and b["p_dynamic_w"] == pytest.approx(D.tdp_w * 0.158)
    assert b["device_dynamic_energy_kwh"] == pytest.approx(n * hours * D.tdp_w * 0.158 * mfu / 1000, rel=1e-12)
    assert b["network_tco2e"] == pytest.approx(n * hours * H100.network_power_w_per_device / 1000 * 1.2 * 400 / 1e6)
    slot_w = D.tdp_w * 0.842 + D.tdp_w * 0.158 * mfu + H100.node_other_power_w * math.ceil(n / 8) / n
    assert b["w_per_device_slot"] == pytest.approx(slot_w, rel=1e-12)
    assert b["facility_kwh_per_device_hour"] == pytest.approx(
        (slot_w + H100.network_power_w_per_device) / 1000 * 1.2, rel=1e-12)


def test_alpha_scales_only_the_dynamic_part():
    a = run_carbon(None, "H100", n_devices=8, duration_h=10, utilization=0.5, **{**PAPER, "alpha": 2.0})
    assert a.it_energy_kwh == pytest.approx(_paper_hand(8, 10, 0.5, alpha=2.0)[0], rel=1e-12)


def test_share_allocation_charges_a_share_of_a_node():
    node = run_carbon(None, "H100", n_devices=12, duration_h=10, utilization=0.5, **PAPER)
    share = run_carbon(None, "H100", n_devices=12, duration_h=10, utilization=0.5, **{**PAPER, "allocation": "share"})
    # 12 GPUs: 2 whole nodes' host power, or 1.5 nodes' share
    diff_kwh = node.it_energy_kwh - share.it_energy_kwh
    assert diff_kwh == pytest.approx(0.5 * H100.node_other_power_w * 10 / 1000, rel=1e-9)
    assert share.breakdown["nodes_charged"] == pytest.approx(1.5) and node.breakdown["nodes_charged"] == 2


def test_embodied_paper_mode_by_hand():
    n, hours = 16, 8760.0 / 4  # a quarter of a year on a 5-year lifetime: 1/20 of the hardware
    r = run_carbon(None, "H100", n_devices=n, duration_h=hours, utilization=0.5, **PAPER)
    logic, hbm = hardware.logic_cpa(D), hardware.hbm_cpa(D)
    device_kg = D.die_area_mm2 / 100 * logic + D.hbm_gb * hbm
    kg = embodied_kg(H100, resolve_accounting(embodied_mode="paper", ci=0))
    host_kg = (H100.cpus_per_node * H100.cpu_die_area_mm2 / 100 * logic + H100.dram_gb_per_node *
               kg["cpa_dram_kg_per_gb"] + H100.ssd_gb_per_node * kg["cpa_ssd_kg_per_gb"])
    manuf_t = (n * device_kg + 2 * host_kg) / 20 / 1000
    assert r.breakdown["amortisation_fraction"] == pytest.approx(1 / 20)
    assert r.breakdown["embodied_accelerator_tco2e"] == pytest.approx(n * device_kg / 20 / 1000, rel=1e-12)
    assert r.breakdown["embodied_die_tco2e"] == pytest.approx(n * D.die_area_mm2 / 100 * logic / 20 / 1000)
    assert r.breakdown["embodied_hbm_tco2e"] == pytest.approx(n * D.hbm_gb * hbm / 20 / 1000)
    assert r.breakdown["embodied_manufacturing_tco2e"] == pytest.approx(manuf_t, rel=1e-12)
    assert r.embodied_tco2e == pytest.approx(manuf_t * (1 + INFRA), rel=1e-12)
    assert r.total_tco2e == pytest.approx(r.operational_tco2e + manuf_t * (1 + INFRA), rel=1e-12)
    assert r.embodied_low_tco2e <= r.embodied_tco2e <= r.embodied_high_tco2e
    no_infra = run_carbon(None, "H100", n_devices=n, duration_h=hours, utilization=0.5,
                          **{**PAPER, "infrastructure": False})
    assert no_infra.embodied_tco2e == pytest.approx(manuf_t, rel=1e-12)
    none = run_carbon(None, "H100", n_devices=n, duration_h=hours, utilization=0.5,
                      **{**PAPER, "include_embodied": False})
    assert none.embodied_tco2e == 0.0 and none.total_tco2e == pytest.approx(r.operational_tco2e)


def test_embodied_vendor_mode_uses_the_given_kg():
    r = run_carbon(None, "H100", n_devices=8, duration_h=8760.0, utilization=0.5,
                   **{**PAPER, "embodied_mode": "vendor", "vendor_kg_per_device": 1000.0})
    assert r.breakdown["embodied_accelerator_tco2e"] == pytest.approx(8 * 1000 / 5 / 1000)
    assert r.breakdown["embodied_die_tco2e"] == 0.0


def test_lifetime_policies():
    kw = dict(n_devices=8, duration_h=2 * 8760.0, utilization=0.5)
    one_year = {**PAPER, "lifetime_years": 1.0}
    replace = run_carbon(None, "H100", **kw, **one_year)
    whole = run_carbon(None, "H100", **kw, **{**one_year, "lifetime_policy": "whole_run"})
    assert replace.breakdown["amortisation_fraction"] == pytest.approx(2.0)
    assert whole.breakdown["amortisation_fraction"] == pytest.approx(1.0)
    assert replace.embodied_tco2e == pytest.approx(2 * whole.embodied_tco2e)
    assert "charged 2.00 hardware lifetimes" in replace.breakdown["lifetime_note"]
    with pytest.raises(InfeasibleError) as err:
        run_carbon(None, "H100", **kw, **{**one_year, "lifetime_policy": "refuse"})
    assert err.value.constraint == "lifetime"
    assert err.value.details["duration_years"] == pytest.approx(2.0)
    assert err.value.details["lifetime_years"] == 1.0
    assert "2.00 years" in err.value.reason


def test_development_overhead():
    r = run_carbon(None, "H100", n_devices=8, duration_h=100, utilization=0.5,
                   **{**PAPER, "development_overhead": 0.5})
    assert r.breakdown["development_tco2e"] == pytest.approx(0.5 * r.total_tco2e)
    assert r.breakdown["development_device_hours"] == pytest.approx(0.5 * 800)


@pytest.mark.parametrize("settings", [PAPER, {**PAPER, "allocation": "share", "embodied_mode": "vendor"},
                                      {"ci": 300.0, "goodput": 0.9}, {"ci": 300.0},
                                      {"ci": 100.0, "include_embodied": False, "lifetime_policy": "whole_run"}])
def test_scorer_prices_layouts_like_run_carbon(settings):
    acc = resolve_accounting(**settings)
    score = carbon_scorer(H100, acc)
    for n, steady_s, u in ((16, 3600.0 * 100, 0.4), (1000, 3600.0 * 2000, 0.7)):
        r = run_carbon(None, "H100", n_devices=n, duration_h=steady_s / 3600, utilization=u, **settings)
        assert float(score(n, steady_s, u)) == pytest.approx(r.total_tco2e, rel=1e-9)


def test_scorer_refuses_runs_longer_than_the_lifetime():
    acc = resolve_accounting(**{**PAPER, "lifetime_years": 1.0, "lifetime_policy": "refuse"})
    score = carbon_scorer(H100, acc)
    assert math.isfinite(float(score(8, 0.99 * 8760 * 3600, 0.5)))
    assert float(score(8, 1.01 * 8760 * 3600, 0.5)) == math.inf


# ---- the papers' ideal curve ---------------------------------------------------------------
def test_ideal_carbon_by_hand():
    c = 1e25
    r = ideal_carbon(c, "H100", deadline_days=90, pue=1.1, ci=400.0)
    device_s = c / D.peak_flops("bf16")
    n = math.ceil(device_s / (90 * 86400))
    assert r.breakdown["n_devices"] == n
    assert r.breakdown["duration_h"] == pytest.approx(device_s / n / 3600)
    assert r.it_energy_kwh == pytest.approx(device_s * D.tdp_w / 3.6e6, rel=1e-12)
    assert r.operational_tco2e == pytest.approx(device_s * D.tdp_w / 3.6e6 * 1.1 * 400 / 1e6, rel=1e-12)
    assert r.total_tco2e == r.operational_tco2e and r.embodied_tco2e == 0.0
    # exactly one device-deadline of work needs one device, not two
    one = ideal_carbon(D.peak_flops("bf16") * 86400.0, "H100", deadline_days=1, ci=400.0)
    assert one.breakdown["n_devices"] == 1
    assert ideal_carbon(c, "H100", deadline_days=45, ci=400.0).breakdown["n_devices"] == math.ceil(device_s / (45 * 86400))
    fp8 = ideal_carbon(c, "H100", ci=400.0, precision="fp8")
    assert fp8.it_energy_kwh == pytest.approx(c / D.peak_flops("fp8") * D.tdp_w / 3.6e6)


@pytest.mark.parametrize("field,kw", [("deadline_days", {"deadline_days": 0}), ("deadline_days", {"deadline_days": 36501}),
                                      ("train_flops", {"train_flops": 0}), ("pue", {"pue": 0.99}),
                                      ("pue", {"pue": 3.01})])
def test_ideal_carbon_bounds(field, kw):
    args = {"train_flops": 1e24, **kw}
    with pytest.raises(InputError) as err:
        ideal_carbon(args.pop("train_flops"), "H100", ci=400.0, **args)
    assert err.value.field == field
    # just inside the bounds is an answer
    assert ideal_carbon(1e24, "H100", ci=400.0, deadline_days=1e-3, pue=3.0).total_tco2e > 0
    assert ideal_carbon(1e24, "H100", ci=400.0, deadline_days=36500, pue=1.0).total_tco2e > 0


# ---- run_carbon's input bounds -------------------------------------------------------------
def test_duration_bounds():
    kw = dict(n_devices=8, utilization=0.5, ci=400.0, goodput=1.0, lifetime_policy="replace")
    assert run_carbon(None, "H100", duration_h=1e9, **kw).breakdown["duration_h"] == 1e9
    for bad in (0, -1, 1.001e9):
        with pytest.raises(InputError) as err:
            run_carbon(None, "H100", duration_h=bad, **kw)
        assert err.value.field == "duration_h"
    assert run_carbon(None, "H100", device_hours=8e9, **kw).breakdown["duration_h"] == 1e9
    with pytest.raises(InputError) as err:
        run_carbon(None, "H100", device_hours=8.01e9, **kw)
    assert err.value.field == "device_hours"
    for extra, got in (({}, "neither"), ({"duration_h": 1.0, "device_hours": 8.0}, "both")):
        with pytest.raises(InputError) as err:
            run_carbon(None, "H100", **kw, **extra)
        assert err.value.field == "duration_h"
        assert str(err.value).endswith(f"give exactly one of duration_h and device_hours, got {got}")
    with pytest.raises(InputError) as err:
        run_carbon(None, "H100", duration_h=1.0, **{**kw, "utilization": 0})
    assert err.value.field == "utilization"
    with pytest.raises(InputError) as err:
        run_carbon(None, "H100", duration_h=1.0, bogus=1, **kw)
    assert err.value.field == "bogus"


def test_scope_line_names_every_term_counted():
    # the one line a reader gets to know what a figure includes (a fresh-seed mutation survivor)
    r = run_carbon(None, "H100", n_devices=16, duration_h=100, utilization=0.5, **PAPER)
    assert r.scope == ("operational: device (static), device (dynamic), node beyond devices (nameplate), "
                       "network switches; papers' static + dynamic x MFU; allocation node; PUE 1.2; steady state "
                       "(goodput 1); embodied paper (accelerators, host CPU/DRAM/SSD, infrastructure; lifetime 5 y, "
                       "replace)")
    r = run_carbon(None, "H100", n_devices=16, duration_h=100, utilization=0.5,
                   **{**PAPER, "goodput": 0.9, "include_embodied": False})
    assert r.scope.endswith("; goodput 0.900 (interruptions, restarts, checkpoints); no embodied")
    r = run_carbon(None, "H100", n_devices=16, duration_h=100, utilization=0.5,
                   **{**PAPER, "infrastructure": False, "embodied_mode": "vendor"})
    assert r.scope.endswith("; embodied vendor (accelerators, host CPU/DRAM/SSD; lifetime 5 y, replace)")


def test_embodied_band_by_hand():
    # low/high: the per-device figure at the published vendor range's ends, infrastructure share
    # at its range's ends; host items are point values
    n, hours = 16, 8760.0 / 4
    r = run_carbon(None, "H100", n_devices=n, duration_h=hours, utilization=0.5, **PAPER)
    infra = load_yaml("embodied.yaml")["infrastructure"]["fraction_range"]
    v_lo, v_hi = load_yaml("embodied.yaml")["vendor_anchored"]["per_device_kg"]["range"]
    dev_kg = r.breakdown["device_embodied_kg"]
    host_t = 2 * r.breakdown["host_embodied_kg_per_node"] / 20 / 1000
    assert r.embodied_low_tco2e == pytest.approx((n * min(dev_kg, v_lo) / 20 / 1000 + host_t) * (1 + infra[0]), rel=1e-12)
    assert r.embodied_high_tco2e == pytest.approx((n * max(dev_kg, v_hi) / 20 / 1000 + host_t) * (1 + infra[1]), rel=1e-12)
    assert r.breakdown["goodput_setting"] == 1.0
