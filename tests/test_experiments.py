"""Experiments: scenario validation, power-law fit, claim checks, dedupe, `carbonscaling sweep` end to end."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling.cli import main
from carbonscaling.errors import InputError
from carbonscaling.experiments import claims as C
from carbonscaling.experiments.accounting import account
from carbonscaling.experiments.fit import fit_power_law
from carbonscaling.experiments.runner import extended_deadline, plan, run_scenarios
from carbonscaling.experiments.scenario import (load_scenario, model_widths, scenario_from_mapping,
                                                shipped_scenarios, widths_for_params)

from helpers import write_file

TINY = {
    "name": "tiny",
    "title": "tiny sweep",
    "plot": "loss_vs_carbon",
    "fit": True,
    "compare_to": "ideal",
    "models": {"preset": "cs-v1", "d_model": [2048, 3072]},
    "base": {"device": "H100", "deadline_days": 90, "carbon": {"ci": 127, "lifetime_years": 5}},
    "series": [{"label": "ideal", "kind": "ideal"}, {"label": "H100"},
               {"label": "no emb", "carbon": {"include_embodied": False}}],
    "claims": [
        {"id": "tiny-above-ideal", "claim": "Practical is above ideal.", "check": "ratio",
         "args": {"series": "H100", "reference": "ideal", "expect": [1.0, None]}},
        {"id": "tiny-no-emb-between", "claim": "No emb lies between.", "check": "between",
         "args": {"series": "no emb", "lower": "ideal", "upper": "H100"}},
    ],
}


def with_(base: dict, path: str, value) -> dict:
    """A deep copy of ``base`` with ``path`` ("series.1.carbon.ci") set (or deleted if value is ...)."""
    out = yaml.safe_load(yaml.safe_dump(base))
    *head, last = path.split(".")
    node = out
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    key = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return out


# ---- scenario validation ---------------------------------------------------------------------
@pytest.mark.parametrize("path,value,field", [
    ("colour", "red", "colour"),
    ("plot", "pie", "plot"),
    ("models", ..., "models"),
    ("series", [], "series"),
    ("models.d_model.0", 100, "models.d_model[0]"),
    ("models.preset", "cs-v9", "models.preset"),
    ("base.deadline_days", -1, "base.deadline_days"),
    ("base.on_infeasible", "retry", "base.on_infeasible"),
    ("base.options.qat", "maybe", "base.options.qat"),
    ("base.options.turbo", True, "base.options.turbo"),
    ("series.1.device", "H1OO", "series[1].device"),
    ("series.1.carbon.ci", "mars-north1", "series[1].carbon.ci"),
    ("series.2.carbon.pue", 9, "series[2].carbon.pue"),
    ("series.2.label", "H100", "series[2].label"),
    ("series.0.kind", "optimal", "series[0].kind"),
    ("compare_to", "V100", "compare_to"),
])
def test_bad_scenario_names_the_field(path, value, field):
    with pytest.raises(InputError) as err:
        scenario_from_mapping(with_(TINY, path, value))
    assert err.value.field == field, err.value


def test_scenario_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  title: [\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid YAML") as err:
        load_scenario(bad)
    assert err.value.field == "scenario"
    with pytest.raises(InputError, match="no such file"):
        load_scenario(tmp_path / "missing.yaml")


def test_sweep_cli_bad_scenario_is_one_line_exit_2(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(with_(TINY, "series.1.carbon.ci", "mars-north1")), encoding="utf-8")
    assert main(["sweep", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: series[1].carbon.ci")
    assert main(["paper", "--only", "v1-fig99", "--no-progress"]) == 2
    assert "only" in capsys.readouterr().err
    ok = write_file(tmp_path, "tiny.yaml", yaml.safe_dump(TINY))
    assert main(["sweep", str(ok), "--jobs", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: jobs")


def test_yaml_numbers_and_params_range():
    sc = scenario_from_mapping(with_(TINY, "models", {"preset": "cs-v1", "params": {"min": "1e11", "max": 1e15}}))
    ws = model_widths(sc)
    assert ws == widths_for_params("cs-v1", 1e11, 1e15)
    from carbonscaling.scaling import from_preset

    n = [from_preset("cs-v1", d).params_law for d in ws]
    assert n == sorted(n) and n[0] < 1e11 * 2 and n[-1] > 1e15 / 2  # ends nearest the stated bounds
    assert all(d % 512 == 0 for d in ws)


def test_shipped_scenarios_cover_the_papers():
    scs = shipped_scenarios()
    names = {s.name for s in scs}
    assert {"v1-fig4", "v1-fig5a", "v1-fig5b", "v1-fig6", "v1-fig7", "v1-fig8", "v1-fig9", "v1-fig10",
            "v2-fig3", "v2-fig4a", "v2-fig4b", "v2-fig5", "v2-fig6a", "v2-fig6b", "v2-fig7a", "v2-fig7b"} <= names
    ids = {c.id for s in scs for c in s.claims}
    assert {"v1-practical-2x-5x", "v1-no-emb-toward-ideal", "v1-newer-less-carbon", "v1-diminishing-returns",
            "v2-tpuv4-between", "v2-tpuv5p-between", "v1-1t-per-device-up-total-down", "v2-5y-62", "v2-10y-83",
            "v2-5y-euv-less", "v2-10y-euv-less", "v2-qat-42", "v2-europe-north2-80",
            "v2-1t-europe-north2-97-embodied", "v1-aggressive-batch-largest-only"} <= ids


# ---- power-law fit ----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(k=st.floats(0.5, 50), alpha=st.floats(0.001, 0.5), lo=st.floats(-2, 4), span=st.floats(1, 10))
def test_fit_recovers_k_and_alpha(k, alpha, lo, span):
    co = np.logspace(lo, lo + span, 9)
    f = fit_power_law(co, k * co ** -alpha)
    assert f.k == pytest.approx(k, rel=1e-6) and f.alpha == pytest.approx(alpha, rel=1e-6, abs=1e-9)
    assert f.r2 == pytest.approx(1.0, abs=1e-9) and f.n == 9


def test_fit_with_noise_and_bad_input():
    rng = np.random.default_rng(0)
    co = np.logspace(1, 9, 30)
    loss = 2.5 * co ** -0.05 * np.exp(rng.normal(0, 0.002, co.size))
    f = fit_power_law(co, loss)
    assert f.alpha == pytest.approx(0.05, abs=0.002) and f.k == pytest.approx(2.5, rel=0.02) and 0.9 < f.r2 < 1
    with pytest.raises(InputError):
        fit_power_law([1.0], [2.0])
    with pytest.raises(InputError):
        fit_power_law([5.0, 5.0, -1], [1.0, 2.0, 3.0])


# ---- policy and accounting -------------------------------------------------------------------------
def test_extended_deadline():
    assert extended_deadline(90, 100) == 180
    assert extended_deadline(90, 400) == 720
    assert extended_deadline(90, 30000) == 36500  # capped at the search's 100 years
    assert extended_deadline(90, 40000) is None


def test_accounting_is_linear_at_the_largest_scales():
    from carbonscaling.hardware import load_system

    CARBON_DEVICE_LIMIT, CARBON_DURATION_LIMIT_H = 10**8, 1e6  # beyond every searched point
    s = load_system("B100")
    kw = {"ci": 127, "lifetime_years": 5, "infrastructure": False}
    base = account(s, CARBON_DEVICE_LIMIT, 100.0, 0.3, kw)
    big = account(s, 3 * CARBON_DEVICE_LIMIT, 100.0, 0.3, kw)
    long = account(s, 1000, 3 * CARBON_DURATION_LIMIT_H, 0.3, kw)
    ref = account(s, 1000, CARBON_DURATION_LIMIT_H, 0.3, kw)
    for k in ("operational_tco2e", "embodied_tco2e", "total_tco2e", "energy_kwh"):
        assert big[k] == pytest.approx(3 * base[k], rel=1e-12)
        assert long[k] == pytest.approx(3 * ref[k], rel=1e-12)


# ---- claim checks on synthetic rows --------------------------------------------------------------
def _rows(series: dict[str, list[float]], deadlines: dict[str, list[float]] | None = None) -> dict:
    out = []
    for label, vals in series.items():
        for i, v in enumerate(vals):
            dl = (deadlines or {}).get(label, [90.0] * len(vals))[i]
            out.append({"series": label, "kind": "ideal" if label == "ideal" else "practical", "d_model": 1024 * (i + 1),
                        "params_law": 10.0 ** (10 + i), "total_tco2e": v, "status": "ok" if dl == 90 else "extended",
                        "deadline_days_used": dl, "loss": 2.0 - 0.1 * i})
    return {"x": out}


def test_checks_can_agree_and_disagree():
    rows = _rows({"ref": [100, 100, 100], "a": [60, 58, 57], "b": [90, 95, 99]})
    assert C.check_reduction(rows, "x", {"series": "a", "reference": "ref", "expect": 0.42, "tolerance": 0.05})[2] \
        == C.AGREES
    assert C.check_reduction(rows, "x", {"series": "b", "reference": "ref", "expect": 0.42, "tolerance": 0.05})[2] \
        == C.DISAGREES
    assert C.check_ratio(rows, "x", {"series": "ref", "reference": "a", "expect": [1.5, 2.0]})[2] == C.AGREES
    assert C.check_ratio(rows, "x", {"series": "ref", "reference": "b", "expect": [2, 5]})[2] == C.DISAGREES
    assert C.check_ordering(rows, "x", {"series": ["ref", "b", "a"]})[2] == C.AGREES
    assert C.check_ordering(rows, "x", {"series": ["a", "b", "ref"]})[2] == C.DISAGREES
    assert C.check_between(rows, "x", {"series": "b", "lower": "a", "upper": "ref"})[2] == C.AGREES


def test_points_under_different_deadlines_are_not_compared():
    rows = _rows({"ref": [100, 100, 100], "a": [50, 50, 500]}, {"a": [90, 90, 180]})
    measured, _, verdict = C.check_reduction(rows, "x", {"series": "a", "reference": "ref", "at_least": 0.0})
    assert verdict == C.AGREES and "over 2 models" in measured


# ---- dedupe and end to end ---------------------------------------------------------------------
def test_searches_are_shared_across_scenarios_and_carbon_variants():
    a = scenario_from_mapping(TINY)
    b = scenario_from_mapping({**with_(TINY, "name", "tiny-v2"), "models": {"preset": "cs-v2", "d_model": [2048, 3072]},
                               "series": [{"label": "us-east5", "carbon": {"ci": "us-east5"}},
                                          {"label": "europe-north2", "carbon": {"ci": "europe-north2"}}],
                               "claims": [], "compare_to": None})
    points, unique = plan([a, b])
    assert len(points) == 10 and len(unique) == 2  # cs-v1 / cs-v2 share the architecture at these widths
    res = run_scenarios([a, b], jobs=1)
    assert res.stats["unique_searches"] == 2 and res.stats["search_calls"] == 2
    h = {r["d_model"]: r for r in res.rows["tiny"] if r["series"] == "H100"}
    e = {r["d_model"]: r for r in res.rows["tiny-v2"] if r["series"] == "europe-north2"}
    assert all(h[d]["devices_used"] == e[d]["devices_used"] for d in h)
    shipped_points, shipped_unique = plan(shipped_scenarios())
    searched = sum(p.job is not None for p in shipped_points)
    assert len(shipped_unique) < searched / 2


def test_sweep_end_to_end(tmp_path, capsys):
    p = write_file(tmp_path, "tiny.yaml", yaml.safe_dump(TINY))
    out = tmp_path / "out"
    assert main(["sweep", str(p), "--out", str(out), "--jobs", "1", "--no-progress", "--svg"]) == 0
    rows = list(csv.DictReader((out / "tiny" / "tiny.csv").open(encoding="utf-8")))
    assert len(rows) == 6 and {r["series"] for r in rows} == {"ideal", "H100", "no emb"}
    for r in rows:
        assert float(r["total_tco2e"]) > 0 and math.isfinite(float(r["loss"]))
    assert all(float(r["embodied_tco2e"]) == 0 for r in rows if r["series"] != "H100")
    png = out / "tiny" / "tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "tiny" / "tiny.svg").stat().st_size > 1000
    report = (out / "report.md").read_text(encoding="utf-8")
    table = report.split("## Claims", 1)[1].split("\n## ", 1)[0]
    for c in TINY["claims"]:
        assert sum(c["claim"] in line for line in table.splitlines()) == 1
    assert "Power-law fits" in report and "<img" in (out / "report.html").read_text(encoding="utf-8")
    claims = list(csv.DictReader((out / "claims.csv").open(encoding="utf-8")))
    assert [c["id"] for c in claims] == ["tiny-above-ideal", "tiny-no-emb-between"]
    assert all(c["verdict"] == "agrees" for c in claims)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("claim,field", [
    ({"id": "c", "claim": "x", "check": "vibes", "args": {}}, "claims[0].check"),
    ({"id": "c", "claim": "x", "check": "ratio", "args": {"series": "B200", "reference": "ideal", "expect": [1, 2]}},
     "claims[0].args"),
])
def test_bad_claims_name_the_field(claim, field):
    with pytest.raises(InputError) as err:
        scenario_from_mapping({**TINY, "claims": [claim]})
    assert err.value.field == field


def test_claim_on_another_experiment_not_run_is_not_evaluated():
    sc = scenario_from_mapping({**TINY, "claims": [{"id": "c", "claim": "x", "check": "ratio",
                                                    "args": {"series": "other:B100", "reference": "H100",
                                                             "expect": [1, 2]}}]})
    rows = _rows({"H100": [1.0], "ideal": [0.5], "no emb": [0.9]})
    (res,) = C.evaluate_claims([sc], {"tiny": rows["x"]})
    assert res.verdict == C.NOT_EVALUATED and "other" in res.measured
