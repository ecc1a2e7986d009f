"""The step-time input drawn from the estimate's own cell of the residuals (uncertainty.yaml ``select_by``):
its device and model kind, else its device, else every row.

Every expected figure is read from ``data/step_time_residuals.csv`` with the csv module here, not
from the code under test.
"""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonscaling._data import data_path
from carbonscaling.carbon import run_carbon
from carbonscaling.errors import InputError
from carbonscaling.uncertainty import draw, load_inputs, own_pool, propagate, quantile, select_rows
from helpers import cli


def csv_rows() -> list[dict]:
    with data_path("step_time_residuals.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


ROWS = csv_rows()
COUNTS = Counter(r["device"] for r in ROWS)
CELLS = Counter((r["device"], r["model_kind"]) for r in ROWS)
SPEC = load_inputs()["step_time"]
N = SPEC.params["min_rows"]


def ratios(device: str | None = None, kind: str | None = None) -> np.ndarray:
    return np.array([float(r["ratio_measured_over_predicted"]) for r in ROWS
                     if device in (None, r["device"]) and kind in (None, r["model_kind"])])


def q(tab: np.ndarray, p: float) -> float:
    return float(np.quantile(tab, p, method="inverted_cdf"))


def test_the_table_carries_the_published_runs_and_every_megatron_bridge_row_with_the_selecting_columns():
    assert {"device", "model_kind", "precision"} <= set(ROWS[0])
    assert {r["model_kind"] for r in ROWS} == {"dense", "moe", "hybrid"}
    published = [r for r in ROWS if not r["run_id"].startswith("nemo:")]
    assert any(r["run_id"].startswith("megatron2021_") for r in published)
    nemo = [r for r in ROWS if r["run_id"].startswith("nemo:")]
    from carbonscaling.validation.throughput import SYSTEMS
    assert {r["device"] for r in nemo} == set(SYSTEMS.values())  # catalog names, not DGX system names
    assert N >= 2 and sum(1 for n in COUNTS.values() if n >= N) >= 5 and min(COUNTS.values()) < N


@given(counts=st.dictionaries(st.sampled_from("abcde"), st.integers(0, 30)), value=st.sampled_from("abcdef"),
       n=st.integers(1, 30))
def test_own_pool_is_the_value_exactly_when_it_has_at_least_min_rows(counts, value, n):
    got = own_pool(counts, value, n)
    assert got == (value if counts.get(value, 0) >= n else None)
    assert own_pool(counts, None, n) is None


@pytest.mark.parametrize("device", sorted(d for d, n in COUNTS.items() if n >= N))
def test_a_device_with_enough_rows_draws_only_its_own_rows(device):
    spec = select_rows(SPEC, {"device": device})
    own = ratios(device)
    x = draw(spec, 1.0, 4096, np.random.default_rng(0))
    assert np.isin(x, own).all() and len(np.unique(x)) == len(np.unique(own))
    assert spec.params["pool"]["by"] == {"device": device} and spec.params["pool"]["rows"] == COUNTS[device]
    for p in (0.05, 0.5, 0.95):
        assert quantile(spec, 1.0, p) == q(own, p)


@pytest.mark.parametrize("device", sorted(d for d, n in COUNTS.items() if n < N) + ["A100", "GB200+2y"])
def test_a_device_with_fewer_rows_draws_the_pool(device):
    spec = select_rows(SPEC, {"device": device})
    pool = ratios()
    assert spec.params["pool"]["by"] == {} and spec.params["pool"]["rows"] == len(ROWS)
    assert f"all {len(ROWS)} rows" in spec.params["pool"]["line"] and f"fewer than {N}" in spec.params["pool"]["line"]
    x = draw(spec, 1.0, 4096, np.random.default_rng(0))
    assert np.isin(x, pool).all() and not np.isin(x, ratios(device)).all()


def test_the_pools_quantiles_are_the_csvs():
    spec = select_rows(SPEC, {})  # an estimate that names no device
    assert "the estimate has no device" in spec.params["pool"]["line"]
    for p in (0.05, 0.5, 0.95):
        assert quantile(spec, 1.0, p) == q(ratios(), p)


def test_an_alias_names_the_same_device_as_the_table():
    target = SPEC.params["aliases"]["H100"]
    spec = select_rows(SPEC, {"device": "H100"})
    assert spec.params["pool"]["by"] == {"device": target}
    assert spec.params["pool"]["line"].startswith(f"{COUNTS[target]} H100 (= {target}) rows")


def test_draws_are_deterministic_for_a_seed():
    spec = select_rows(SPEC, {"device": "GB200"})
    a = draw(spec, 1.0, 512, np.random.default_rng(11))
    b = draw(spec, 1.0, 512, np.random.default_rng(11))
    assert np.array_equal(a, b)
    assert np.array_equal(a, np.random.default_rng(11).choice(ratios("GB200"), size=512))  # the bootstrap, by hand
    c = run_carbon(None, "GB200", n_devices=512, duration_h=30 * 24, utilization=0.4, ci=400)
    assert propagate(c, seed=5).to_dict() == propagate(c, seed=5).to_dict()


def _step_only(device: str, **params) -> dict:
    """Total-tCO2e band of a run with only the step-time input (measured power model: total ∝ step time)."""
    c = run_carbon(None, device, n_devices=1024, duration_h=40 * 24, utilization=0.4, ci=400)
    u = propagate(c, seed=2, samples=20_000, inputs={"step_time": SPEC.__class__(
        SPEC.name, SPEC.kind, SPEC.distribution, {**SPEC.params, **params}, SPEC.source, SPEC.verified)})
    return {"point": c.total_tco2e, **u.bands["total_tco2e"], "pool": u.inputs["step_time"]["pool"],
            "swing": u.sensitivity[0]["swing_tco2e"]}


@pytest.mark.parametrize("device,table_device", [("H100", "H100-SXM"), ("GB200", "GB200")])
def test_the_step_time_band_follows_the_device_rows(device, table_device):
    own, pooled = _step_only(device), _step_only(device, min_rows=10**6)  # no device has a million rows
    assert own["pool"]["by"] == {"device": table_device} and pooled["pool"]["by"] == {}
    for band, tab in ((own, ratios(table_device)), (pooled, ratios())):
        # by hand: the one input's bootstrap with the same seed, times the point
        x = np.random.default_rng(2).choice(tab, size=20_000)
        for p in ("p5", "p95"):
            assert band[p] == pytest.approx(band["point"] * np.percentile(x, int(p[1:])), rel=1e-9)
    # The p5-p95 swing is wider or narrower than the pool's as the device's own rows are (total ∝ step time).
    # (The bands are bootstrap percentiles: at a quantile that falls on a step of the rows' CDF, as GB200's
    # p95 at 77/81 = 0.9506, they may take the neighbouring row; the swing uses the rows' quantiles.)
    for band, tab in ((own, ratios(table_device)), (pooled, ratios())):
        assert band["swing"] == pytest.approx(band["point"] * (q(tab, 0.95) - q(tab, 0.05)), rel=1e-9)
    own_w, pool_w = q(ratios(table_device), 0.95) - q(ratios(table_device), 0.05), q(ratios(), 0.95) - q(ratios(), 0.05)
    assert np.sign(own["swing"] - pooled["swing"]) == np.sign(own_w - pool_w) != 0


def test_estimate_reports_the_pool_end_to_end(capsys, tmp_path):
    f = tmp_path / "pooled.yaml"
    f.write_text("inputs:\n  step_time: {kind: factor, distribution: empirical, table: step_time_residuals}\n")
    argv = ["uncertainty", "--model", "llama2-7b", "--device", "GB200", "--samples", "4096", "--json"]
    code, out, err = cli(capsys, *argv, "--inputs-file", str(f))
    assert code == 0, err
    pooled = json.loads(out)
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    own = json.loads(out)
    n = CELLS["GB200", "dense"]  # Llama 2 7B is dense; GB200 x dense has >= 10 rows
    assert n >= N and own["inputs"]["step_time"]["pool"] == {
        "by": {"device": "GB200", "model_kind": "dense"}, "rows": n, "line": own["inputs"]["step_time"]["pool"]["line"]}
    assert "pool" not in pooled["inputs"]["step_time"]
    swing = {d["input"]: d for d in own["sensitivity"]}["step_time"]
    assert (swing["low_value"], swing["high_value"]) == (q(ratios("GB200", "dense"), 0.05), q(ratios("GB200", "dense"), 0.95))
    code, out, err = cli(capsys, "estimate", "--model", "llama2-7b", "--device", "GB200")
    assert code == 0, err
    assert f"{n} GB200 dense rows of step_time_residuals.csv (the estimate's own device and model_kind;" in out


@pytest.mark.parametrize("entry,field", [("select_by: accelerator", "select_by"),
                                         ("select_by: device, min_rows: 0", "min_rows"),
                                         ("select_by: device, min_rows: ten", "min_rows"),
                                         ("select_by: device, aliases: [H100]", "aliases"),
                                         ("select_by: [device, device]", "select_by"),
                                         ("select_by: [device, accelerator]", "select_by"),
                                         ("select_by: []", "select_by")])
def test_a_bad_selection_is_one_named_error(tmp_path, entry, field):
    f = tmp_path / "u.yaml"
    f.write_text(f"inputs:\n  step_time: {{kind: factor, distribution: empirical, table: step_time_residuals, {entry}}}\n")
    with pytest.raises(InputError, match=f"step_time.{field}"):
        load_inputs(f)
    f.write_text("inputs:\n  grid_intensity: {kind: factor, distribution: empirical, table: region_year_ratios, "
                 "select_by: device}\n")
    with pytest.raises(InputError, match="select_by"):
        load_inputs(f)


def test_an_h100_estimate_band_widens_with_its_own_rows():
    h100 = ratios("H100-SXM")
    # the data: H100's own 5-95 % spread is wider than the pool's by more than a row step at either end
    assert (q(h100, 0.95) - q(h100, 0.05)) - (q(ratios(), 0.95) - q(ratios(), 0.05)) > 0.1
    own, pooled = _step_only("H100"), _step_only("H100", min_rows=10**6)
    assert (own["p95"] - own["p5"]) / own["point"] > (pooled["p95"] - pooled["p5"]) / pooled["point"] + 0.1


def test_the_shipped_table_is_what_the_script_writes_from_the_current_model():
    """Stale after a performance-model change: `python scripts/step_time_residuals.py` regenerates it."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "step_time_residuals.py"
    spec = importlib.util.spec_from_file_location("step_time_residuals_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fresh = script.published_rows() + script.nemo_rows()
    assert list(ROWS[0]) == list(script.COLUMNS)
    assert fresh == ROWS, "data/step_time_residuals.csv is stale: run python scripts/step_time_residuals.py"


def test_select_by_is_data_any_residual_table_can_use_it(tmp_path):
    """The docs' claim: one YAML entry selects rows of power_residuals.csv by device too."""
    with data_path("power_residuals.csv").open(encoding="utf-8", newline="") as fh:
        power = list(csv.DictReader(fh))
    h100 = np.array([float(r["ratio_measured_over_predicted"]) for r in power if r["device"] == "H100-SXM"])
    f = tmp_path / "u.yaml"
    f.write_text("inputs:\n  it_power: {kind: factor, distribution: empirical, table: power_residuals, select_by: device, "
                 f"min_rows: {len(h100)}, aliases: {{H100: H100-SXM}}, "
                 "other_power_models: {distribution: triangular, low: 0.83, mode: 1.0, high: 1.17}}\n")
    c = run_carbon(None, "H100", n_devices=512, duration_h=30 * 24, utilization=0.4, ci=400)
    u = propagate(c, seed=0, samples=256, inputs=load_inputs(f))
    assert u.inputs["it_power"]["pool"]["rows"] == len(h100)
    assert (u.sensitivity[0]["low_value"], u.sensitivity[0]["high_value"]) == (q(h100, 0.05), q(h100, 0.95))
    from carbonscaling.carbon import PAPER_ACCOUNTING
    paper = propagate(run_carbon(None, "H100", n_devices=512, duration_h=720, utilization=0.4, ci=400,
                                 **PAPER_ACCOUNTING), seed=0, samples=256, inputs=load_inputs(f))
    assert "pool" not in paper.inputs["it_power"] and paper.sensitivity[0]["high_value"] == pytest.approx(
        1.17 - (0.05 * (1.17 - 0.83) * (1.17 - 1.0)) ** 0.5)  # triangular inverse CDF at 0.95, by hand


# ---- device x model kind, most specific cell first ---------------------------------------
def test_the_shipped_selection_is_device_then_model_kind():
    assert SPEC.params["select_by"] == ["device", "model_kind"]


@pytest.mark.parametrize("device,kind", sorted(c for c, n in CELLS.items() if n >= N))
def test_a_cell_with_enough_rows_draws_only_its_own_rows(device, kind):
    spec = select_rows(SPEC, {"device": device, "model_kind": kind})
    own = ratios(device, kind)
    assert spec.params["pool"]["by"] == {"device": device, "model_kind": kind}
    assert spec.params["pool"]["rows"] == CELLS[device, kind] == len(own)
    assert spec.params["pool"]["line"] == (f"{len(own)} {device} {kind} rows of step_time_residuals.csv "
                                           f"(the estimate's own device and model_kind; at least {N})")
    x = draw(spec, 1.0, 4096, np.random.default_rng(0))
    assert np.isin(x, own).all() and len(np.unique(x)) == len(np.unique(own))
    for p in (0.05, 0.5, 0.95):
        assert quantile(spec, 1.0, p) == q(own, p)


@pytest.mark.parametrize("device,kind", sorted(c for c, n in CELLS.items() if n < N and COUNTS[c[0]] >= N)
                         + [("GB200", "a-kind-with-no-rows")])
def test_a_sparse_cell_falls_back_to_its_device(device, kind):
    spec = select_rows(SPEC, {"device": device, "model_kind": kind})
    assert spec.params["pool"]["by"] == {"device": device} and spec.params["pool"]["rows"] == COUNTS[device]
    assert spec.params["pool"]["line"] == (
        f"{COUNTS[device]} {device} rows of step_time_residuals.csv (the estimate's own device; at least {N}; "
        f"device x model_kind: {device} {kind} has {CELLS[device, kind]}, fewer than {N})")
    for p in (0.05, 0.5, 0.95):
        assert quantile(spec, 1.0, p) == q(ratios(device), p)


def test_a_sparse_cell_of_a_sparse_device_falls_back_to_the_pool():
    sparse = sorted(c for c, n in CELLS.items() if COUNTS[c[0]] < N)
    assert sparse  # the data has one (TPUv4: one published run)
    for device, kind in sparse + [("GB200+2y", "dense")]:
        spec = select_rows(SPEC, {"device": device, "model_kind": kind})
        assert spec.params["pool"]["by"] == {} and spec.params["pool"]["rows"] == len(ROWS)
        assert spec.params["pool"]["line"] == (
            f"all {len(ROWS)} rows of step_time_residuals.csv, pooled (device x model_kind: {device} {kind} has "
            f"{CELLS[device, kind]}, fewer than {N}; device: {device} has {COUNTS[device]}, fewer than {N})")
        assert quantile(spec, 1.0, 0.95) == q(ratios(), 0.95)


def test_one_column_select_by_ignores_the_model_kind():
    spec = select_rows(SPEC.__class__(SPEC.name, SPEC.kind, SPEC.distribution, {**SPEC.params, "select_by": "device"},
                                      SPEC.source, SPEC.verified), {"device": "H100", "model_kind": "dense"})
    assert spec.params["pool"]["by"] == {"device": "H100-SXM"} and spec.params["pool"]["line"] == (
        f"{COUNTS['H100-SXM']} H100 (= H100-SXM) rows of step_time_residuals.csv (the estimate's own device; at least {N})")


def test_cell_draws_are_deterministic_for_a_seed():
    spec = select_rows(SPEC, {"device": "H100", "model_kind": "dense"})
    a = draw(spec, 1.0, 512, np.random.default_rng(11))
    assert np.array_equal(a, draw(spec, 1.0, 512, np.random.default_rng(11)))
    assert np.array_equal(a, np.random.default_rng(11).choice(ratios("H100-SXM", "dense"), size=512))  # by hand


@pytest.mark.parametrize("name,kind", [("llama2-7b", "dense"), ("deepseek-v3", "moe")])
def test_propagate_reads_the_model_kind_from_the_model_spec(name, kind):
    from carbonscaling.scaling import named_model
    c = run_carbon(None, "H100", n_devices=1024, duration_h=40 * 24, utilization=0.4, ci=400)
    u = propagate(c, seed=2, samples=20_000, model=named_model(name), inputs={"step_time": SPEC})
    assert u.inputs["step_time"]["pool"]["by"] == {"device": "H100-SXM", "model_kind": kind}
    tab = ratios("H100-SXM", kind)
    x = np.random.default_rng(2).choice(tab, size=20_000)  # by hand: total ∝ step time under the measured power model
    for p in ("p5", "p95"):
        assert u.bands["total_tco2e"][p] == pytest.approx(c.total_tco2e * np.percentile(x, int(p[1:])), rel=1e-9)
    without = propagate(c, seed=2, samples=256, inputs={"step_time": SPEC})  # no model: its device's rows
    assert without.inputs["step_time"]["pool"]["by"] == {"device": "H100-SXM"}


def test_the_dense_h100_band_loses_the_moe_tail():
    """The reason for the finer cell: the H100's 95th percentile comes from its MoE rows."""
    dense, moe, device = ratios("H100-SXM", "dense"), ratios("H100-SXM", "moe"), ratios("H100-SXM")
    assert q(dense, 0.95) < q(device, 0.95) - 0.5 < q(moe, 0.95)
