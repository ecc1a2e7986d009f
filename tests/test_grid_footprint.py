"""Time-varying grids (carbonscaling.grid), Scope 2 accounting and water (carbonscaling.footprint)."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.carbon import run_carbon
from carbonscaling.errors import InputError
from carbonscaling.footprint import scope2, water_defaults, water_footprint
from carbonscaling.grid import (LB_PER_MWH_TO_G_PER_KWH, make_profile, month_starts, on_grid, read_profile_csv,
                                region_profile, suggest_start, window_intensity)


def run(**kw):
    args = dict(n_devices=1024, duration_h=120 * 24, utilization=0.4, ci="us-east5")
    args.update(kw)
    return run_carbon(None, "H100", **args)


def test_region_profile_is_the_shipped_yearly_table():
    p = region_profile("us-east5")
    assert [str(t)[:4] for t in p.times] == ["2021", "2022", "2023", "2024"]
    assert p.ci.tolist() == [309.0, 354.0, 322.0, 323.05]


def test_window_inside_one_year_is_that_year():
    assert window_intensity(region_profile("us-east5"), "2023-03-01", 120 * 24)["ci_g_per_kwh"] == pytest.approx(322.0)


def test_window_across_a_year_boundary_is_hour_weighted():
    w = window_intensity(region_profile("us-east5"), "2022-11-01", 120 * 24)
    h2022 = (30 + 31) * 24          # Nov + Dec 2022
    h2023 = 120 * 24 - h2022
    assert w["ci_g_per_kwh"] == pytest.approx((h2022 * 354 + h2023 * 322) / (120 * 24))
    assert sum(m["hours"] for m in w["months"].values()) == pytest.approx(120 * 24)


def test_years_beyond_the_table_hold_the_nearest_year():
    p = region_profile("us-east5")
    assert window_intensity(p, "2030-01-01", 100)["ci_g_per_kwh"] == pytest.approx(323.05)
    assert window_intensity(p, "2015-06-01", 100)["ci_g_per_kwh"] == pytest.approx(309.0)


def hourly_year(year=2023):
    t = np.arange(np.datetime64(f"{year}-01-01T00"), np.datetime64(f"{year + 1}-01-01T00"), dtype="datetime64[h]")
    month = t.astype("datetime64[M]").astype(int) % 12
    return make_profile("seasonal", t, 200.0 + 20.0 * month, "hour", "test data")


def test_hourly_profile_integrates_months_and_repeats_as_a_typical_year():
    p = hourly_year()
    jan = window_intensity(p, "2023-01-01", 31 * 24)["ci_g_per_kwh"]
    assert jan == pytest.approx(200.0)
    four = window_intensity(p, "2023-03-01", (31 + 30 + 31 + 30) * 24)["ci_g_per_kwh"]
    assert four == pytest.approx((31 * 240 + 30 * 260 + 31 * 280 + 30 * 300) / 122)
    assert window_intensity(p, "2025-03-01", 122 * 24)["ci_g_per_kwh"] == pytest.approx(four)
    assert window_intensity(p, "2022-12-15", 48)["ci_g_per_kwh"] == pytest.approx(420.0)


def test_short_profile_cannot_be_repeated():
    t = np.arange(np.datetime64("2023-01-01T00"), np.datetime64("2023-02-01T00"), dtype="datetime64[h]")
    p = make_profile("jan", t, np.full(len(t), 100.0), "hour", "test")
    with pytest.raises(InputError, match="start"):
        window_intensity(p, "2023-01-20", 30 * 24)


def test_electricity_maps_csv(tmp_path):
    f = tmp_path / "US-MIDA-PJM_2023_hourly.csv"
    lines = ["Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
             "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,"
             "Data Estimated,Data Estimation Method",
             "2023-01-01 00:00:00,USA,PJM,US-MIDA-PJM,300,350,40,10,eia.gov,false,",
             "2023-01-01 01:00:00,USA,PJM,US-MIDA-PJM,,,40,10,eia.gov,false,",
             "2023-01-01 02:00:00,USA,PJM,US-MIDA-PJM,100,150,40,10,eia.gov,false,"]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    lca = read_profile_csv(f)
    assert lca.ci.tolist() == [350.0, 150.0] and lca.name == "US-MIDA-PJM_2023_hourly"
    direct = read_profile_csv(f, basis="direct")
    # the empty hour holds the previous value: (300 + 300 + 100) / 3
    assert window_intensity(direct, "2023-01-01T00:00", 3)["ci_g_per_kwh"] == pytest.approx(700 / 3)


def test_watttime_and_plain_csv(tmp_path):
    w = tmp_path / "wt.csv"
    w.write_text("point_time,value,frequency,market,version\n2023-06-01T00:00:00+00:00,1000,300,RTM,3.2\n"
                 "2023-06-01T01:00:00+00:00,500,300,RTM,3.2\n")
    p = read_profile_csv(w)
    assert p.ci.tolist() == pytest.approx([1000 * LB_PER_MWH_TO_G_PER_KWH, 500 * LB_PER_MWH_TO_G_PER_KWH])
    m = tmp_path / "m.csv"
    m.write_text("month,ci_g_per_kwh\n2024-01,100\n2024-02,200\n")
    mp = read_profile_csv(m)
    assert mp.step == "month" and str(mp.end) == "2024-03-01T00"
    assert window_intensity(mp, "2024-01-31T12", 24)["ci_g_per_kwh"] == pytest.approx(150.0)


def test_bad_csv_is_one_named_error(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("when,what\n1,2\n")
    with pytest.raises(InputError, match="unrecognised columns"):
        read_profile_csv(f)
    f.write_text("datetime,ci_g_per_kwh\nyesterday,100\n")
    with pytest.raises(InputError, match="ISO"):
        read_profile_csv(f)
    f.write_text("datetime,ci_g_per_kwh\n2023-01-01T00:00,-5\n")
    with pytest.raises(InputError, match=r"\[0, 2000\]"):
        read_profile_csv(f)
    with pytest.raises(InputError, match="no such file"):
        read_profile_csv(tmp_path / "missing.csv")


def test_on_grid_scales_operational_carbon_only():
    c = run()
    r = on_grid(c, region_profile("us-east5"), "2022-06-01")
    assert r["ci_g_per_kwh"] == pytest.approx(354.0)
    assert r["operational_tco2e"] == pytest.approx(c.operational_tco2e * 354.0 / 323.05)
    assert r["embodied_tco2e"] == c.embodied_tco2e


def test_suggest_start_picks_the_cleanest_window():
    c = run()
    res = suggest_start(c, {"seasonal": hourly_year()}, month_starts("2023-01", "2023-12"))
    assert res["best"]["start"] == "2023-01-01T00"  # Jan..Apr: the four lowest months (200-260)
    totals = [r["total_tco2e"] for r in res["rows"]]
    assert totals == sorted(totals) and res["saving_vs_worst_tco2e"] > 0


def test_scope2_location_and_market_based():
    c = run()
    s = scope2(c)
    assert s["location_tco2e"] == pytest.approx(c.operational_tco2e)
    assert s["market_tco2e"] == s["location_tco2e"]
    assert scope2(c, renewable_share=1.0)["market_tco2e"] == 0.0
    half = scope2(c, renewable_share=0.5, residual_ci=500)
    assert half["market_tco2e"] == pytest.approx(c.energy_kwh * 250 / 1e6)
    assert scope2(c, contractual_ci=10)["market_tco2e"] == pytest.approx(c.energy_kwh * 10 / 1e6)
    cfe = scope2(c, renewable_share="cfe", region="us-east5")
    assert cfe["covered_share"] == pytest.approx(0.62)
    with pytest.raises(InputError):
        scope2(c, contractual_ci=10, renewable_share=0.5)
    with pytest.raises(InputError, match="renewable_share"):
        scope2(c, renewable_share=1.5)


def test_water_by_hand():
    c = run(pue=1.2)
    w = water_footprint(c, wue_l_per_kwh=0.5, ewif_l_per_kwh=2.0)
    assert w["onsite_l"] == pytest.approx(c.it_energy_kwh * 0.5)
    assert w["offsite_l"] == pytest.approx(c.it_energy_kwh * 1.2 * 2.0)
    d = water_footprint(c)
    assert d["wue_l_per_kwh"] == water_defaults()["wue_l_per_kwh"] and d["defaults_used"]["wue"]
    with pytest.raises(InputError, match="wue"):
        water_footprint(c, wue_l_per_kwh=-1)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(day=st.integers(0, 3000), hours=st.floats(1, 24 * 400), split=st.floats(0.1, 0.9))
def test_window_mean_is_bounded_and_additive(day, hours, split):
    p = hourly_year()
    start = np.datetime64("2020-01-01T00") + np.timedelta64(day * 24, "h")
    w = window_intensity(p, start, hours)["ci_g_per_kwh"]
    assert p.ci.min() - 1e-9 <= w <= p.ci.max() + 1e-9
    a = int(hours * split)
    if 1 <= a < hours - 1:
        first = window_intensity(p, start, a)["ci_g_per_kwh"]
        rest = window_intensity(p, start + np.timedelta64(a, "h"), hours - a)["ci_g_per_kwh"]
        assert w == pytest.approx((a * first + (hours - a) * rest) / hours, rel=1e-9)
