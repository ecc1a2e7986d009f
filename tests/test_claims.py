"""Claim checks (experiments.claims) on synthetic rows: each check can agree and can disagree;
claim arguments are validated when the scenario loads (experiments.claim_args)."""

from __future__ import annotations

import pytest

from carbonscaling.errors import InputError
from carbonscaling.experiments import claims as C
from carbonscaling.experiments.claim_args import validate_args
from carbonscaling.experiments.scenario import scenario_from_mapping


def rows(series: dict[str, list[float]], **cols: dict[str, list[float]]) -> dict:
    """Rows of experiment ``x``: series -> total tCO2e per width; extra columns per series."""
    out = []
    for label, vals in series.items():
        for i, v in enumerate(vals):
            r = {"series": label, "kind": "practical", "d_model": 1024 * (i + 1), "params_law": 10.0 ** (10 + i),
                 "total_tco2e": v, "status": "ok", "deadline_days_used": 90.0, "loss": 3.0 * (v ** -0.05)}
            for col, per_series in cols.items():
                if label in per_series:
                    r[col] = per_series[label][i]
            out.append(r)
    return {"x": out}


def verdict(check, r, **args) -> str:
    return C.CHECKS[check](r, "x", args)[2]


def test_fit_compare():
    # loss = k CO^-alpha exactly (rows() builds loss from total with alpha 0.05); the reference
    # reaches each loss with less carbon (smaller k) or with another exponent
    base = rows({"a": [10, 100, 1000, 1e4], "b": [5, 50, 500, 5e3]})
    for r in base["x"]:
        if r["series"] == "b":
            r["loss"] = 2.9 * r["total_tco2e"] ** -0.05
    assert verdict("fit_compare", base, series="a", reference="b") == C.AGREES
    steep = rows({"a": [10, 100, 1000, 1e4], "b": [10, 100, 1000, 1e4]})
    for r in steep["x"]:
        if r["series"] == "b":
            r["loss"] = 3.5 * r["total_tco2e"] ** -0.2  # alpha 4x larger, k larger: a's k not larger
    assert verdict("fit_compare", steep, series="a", reference="b") == C.DISAGREES


def test_diminishing():
    r = rows({"g1": [100, 100], "g2": [50, 50], "g3": [40, 40], "g4": [35, 35]})
    assert verdict("diminishing", r, series=["g1", "g2", "g3", "g4"]) == C.AGREES  # x2.0, x1.25, x1.14
    r = rows({"g1": [100, 100], "g2": [90, 90], "g3": [30, 30]})
    assert verdict("diminishing", r, series=["g1", "g2", "g3"]) == C.DISAGREES  # x1.11 then x3


def test_per_device_total():
    def one(per_op, per_emb, total, share):
        return rows({s: [t] for s, t in zip("abc", total)},
                    per_device_operational_tco2e=dict(zip("abc", ([x] for x in per_op))),
                    per_device_embodied_tco2e=dict(zip("abc", ([x] for x in per_emb))),
                    embodied_share=dict(zip("abc", ([x] for x in share))),
                    devices_used=dict(zip("abc", ([1000] for _ in "abc"))))
    good = one([1, 2, 3], [0.1, 0.2, 0.3], [300, 200, 100], [0.1, 0.2, 0.3])
    assert verdict("per_device_total", good, series=["a", "b", "c"]) == C.AGREES
    bad = one([3, 2, 1], [0.3, 0.2, 0.1], [100, 200, 300], [0.3, 0.2, 0.1])
    assert verdict("per_device_total", bad, series=["a", "b", "c"]) == C.DISAGREES


def test_reduction_by_size():
    # params_law = 1e10, 1e11, 1e12, 1e13: threshold 1e12 splits 2 / 2
    r = rows({"ref": [100] * 4, "a": [50, 60, 95, 97], "b": [99, 99, 50, 50]})
    assert verdict("reduction_by_size", r, series="a", reference="ref", threshold_params=1e12) == C.AGREES
    assert verdict("reduction_by_size", r, series="b", reference="ref", threshold_params=1e12) == C.DISAGREES
    assert verdict("reduction_by_size", r, series="a", reference="ref", threshold_params=1e20) == C.NOT_EVALUATED


def test_helps_largest():
    r = rows({"ref": [10, 100, 1e4, 1e5], "a": [10, 99, 5e3, 4e4], "b": [5, 50, 9.9e3, 9.9e4]})
    assert verdict("helps_largest", r, series="a", reference="ref", threshold_tco2e=1e3) == C.AGREES
    assert verdict("helps_largest", r, series="b", reference="ref", threshold_tco2e=1e3) == C.DISAGREES


def test_marginal():
    r = rows({"ref": [100] * 3, "a": [97, 98, 99], "b": [50, 50, 50], "c": [120, 120, 120]})
    assert verdict("marginal", r, series=["a"], reference="ref") == C.AGREES
    assert verdict("marginal", r, series=["b", "c"], reference="ref") == C.DISAGREES


def test_share():
    r = rows({"a": [100]}, embodied_share={"a": [0.25]})
    assert verdict("share", r, series="a", expect=0.26) == C.AGREES
    assert verdict("share", r, series="a", expect=0.31) == C.PARTLY
    assert verdict("share", r, series="a", expect=0.6) == C.DISAGREES


def test_trend():
    r = rows({"a": [1, 2, 3, 4, 5]}, mfu={"a": [0.5, 0.45, 0.46, 0.4, 0.3]})
    assert verdict("trend", r, series="a", column="mfu") == C.AGREES
    assert verdict("trend", r, series="a", column="mfu", direction="increasing") == C.DISAGREES
    assert verdict("trend", rows({"a": [1, 2]}, mfu={"a": [0.5, 0.4]}), series="a", column="mfu") == C.NOT_EVALUATED


def test_gap_exceeds():
    # extra carbon of "worse" over "ref" (+50) vs the saving of "better" over "ref" (-10)
    r = rows({"ref": [100, 100], "worse": [150, 150], "better": [90, 90], "best": [20, 20]})
    args = dict(series="worse", reference="ref", others_reference="ref")
    assert verdict("gap_exceeds", r, **args, others=["better"]) == C.AGREES
    assert verdict("gap_exceeds", r, **args, others=["best"]) == C.DISAGREES


# ---- arguments are validated when the scenario loads --------------------------------------
TINY = {"name": "tiny", "title": "t", "models": {"preset": "cs-v1", "d_model": [2048]},
        "base": {"device": "H100"}, "series": [{"label": "H100"}, {"label": "ideal", "kind": "ideal"}]}


@pytest.mark.parametrize("check,args,field", [
    ("ratio", {"series": [["H100"]], "reference": "ideal", "expect": [1, 2]}, "claims[0].args.series"),
    ("ordering", {"series": [1]}, "claims[0].args.series[0]"),
    ("ordering", {"series": ["H100"]}, "claims[0].args.series"),
    ("reduction", {"series": "H100", "reference": "ideal", "expect": "abc"}, "claims[0].args.expect"),
    ("ratio", {"series": "H100", "reference": "ideal", "expect": [2, 1]}, "claims[0].args.expect"),
    ("ratio", {"series": "H100", "reference": "ideal"}, "claims[0].args.expect"),
    ("ratio", {"series": "H100", "reference": "ideal", "expect": [1], "tolerance": True}, "claims[0].args.tolerance"),
    ("trend", {"series": "H100", "column": "colour"}, "claims[0].args.column"),
    ("trend", {"series": "H100", "column": "mfu", "direction": "up"}, "claims[0].args.direction"),
    ("share", {"series": "H100", "expect": 0.3, "typo": 1}, "claims[0].args.typo"),
    ("helps_largest", {"series": "H100", "reference": "ideal", "threshold_tco2e": -5}, "claims[0].args.threshold_tco2e"),
    ("ratio", [1, 2], "claims[0].args"),
    ("validation_baselines", {"quantity": "vibes"}, "claims[0].args.quantity"),
])
def test_bad_claim_arguments_fail_at_load(check, args, field):
    with pytest.raises(InputError) as err:
        scenario_from_mapping({**TINY, "claims": [{"id": "c", "claim": "x", "check": check, "args": args}]})
    assert err.value.field == field, err.value


def test_validation_scenarios_check_their_claims_too():
    with pytest.raises(InputError) as err:
        scenario_from_mapping({"name": "v", "title": "v", "plot": "validation",
                               "claims": [{"id": "c", "claim": "x", "check": "validation_baselines",
                                           "args": {"quantity": 3}}]})
    assert err.value.field == "claims[0].args.quantity"


def test_validated_args_keep_only_what_was_given():
    assert validate_args("helps_largest", {"series": "a", "reference": "b", "threshold_tco2e": "1e5"}, "w") == \
        {"series": "a", "reference": "b", "threshold_tco2e": 1e5}


# ---- the checks not covered above, on synthetic rows -------------------------------------
def test_between():
    # log-position of "mid" between "lo" (0) and "hi" (1) at each width
    r = rows({"lo": [10, 10, 10, 10], "hi": [1000, 1000, 1000, 1000], "mid": [100, 5000, 5000, 5]})
    assert verdict("between", r, series="mid", lower="lo", upper="hi") == C.DISAGREES   # 1 of 4 inside
    r = rows({"lo": [10, 10, 10], "hi": [1000, 1000, 1000], "mid": [100, 999, 1001]})
    assert verdict("between", r, series="mid", lower="lo", upper="hi") == C.PARTLY      # 2 of 3
    r = rows({"lo": [10, 10], "hi": [1000, 1000], "mid": [10, 1000]})                # the bounds count
    assert verdict("between", r, series="mid", lower="lo", upper="hi") == C.AGREES
    measured = C.CHECKS["between"](r, "x", dict(series="mid", lower="lo", upper="hi"))[0]
    assert "0.00..1.00" in measured and "2/2" in measured
    r = rows({"lo": [10], "hi": [1000], "mid": [100]})
    next(x for x in r["x"] if x["series"] == "hi")["status"] = "infeasible"   # no common width
    assert verdict("between", r, series="mid", lower="lo", upper="hi") == C.NOT_EVALUATED


def test_ratio_bounds_and_tolerance():
    r = rows({"ref": [100, 100, 100], "a": [150, 200, 260]})          # ratios 1.5, 2.0, 2.6
    assert verdict("ratio", r, series="a", reference="ref", expect=[1.5, 2.6]) == C.AGREES
    assert verdict("ratio", r, series="a", reference="ref", expect=[1.6, 2.5]) == C.DISAGREES   # 1 of 3
    assert verdict("ratio", r, series="a", reference="ref", expect=[1.6, 2.5], tolerance=0.07) == C.AGREES
    assert verdict("ratio", r, series="a", reference="ref", expect=[1.6, 2.5], tolerance=0.05) == C.PARTLY
    assert verdict("ratio", r, series="a", reference="ref", expect=[1.9]) == C.PARTLY           # no upper bound
    r["x"][0]["deadline_days_used"] = r["x"][1]["deadline_days_used"] = 180.0   # ref's first two widths
    r["x"][2]["status"] = "infeasible"                                         # and its third
    assert verdict("ratio", r, series="a", reference="ref", expect=[1.0]) == C.NOT_EVALUATED


def test_reduction_agrees_within_tolerance_only():
    r = rows({"ref": [100, 100], "a": [60, 62]})                       # 40 % and 38 % less
    assert verdict("reduction", r, series="a", reference="ref", expect=0.40, tolerance=0.03) == C.AGREES
    assert verdict("reduction", r, series="a", reference="ref", expect=0.60, tolerance=0.03) == C.DISAGREES


def _report(metrics=None, carbon=None):
    from types import SimpleNamespace

    return SimpleNamespace(metrics=metrics or {}, extras={"carbon": carbon or []})


def _mape(x):
    return {"device_hours": {"mape": x, "r2_log": 0.9, "n": 10}}


def test_validation_baselines_check():
    from carbonscaling.experiments.paper import check_validation

    def v(**m):
        return check_validation(_report(metrics={k: _mape(x) for k, x in m.items()}))(None, "v", {})

    assert v(ours=0.2, reg=0.3, llmc=0.5)[2] == C.AGREES
    assert v(ours=0.4, reg=0.3, llmc=0.5)[2] == C.PARTLY
    assert v(ours=0.6, reg=0.3, llmc=0.5)[2] == C.DISAGREES
    assert v(ours=0.2, llmc=0.5)[2] == C.AGREES                       # one baseline is enough
    assert v(ours=0.2)[2] == C.NOT_EVALUATED                          # no baseline
    assert v(reg=0.2, llmc=0.5)[2] == C.NOT_EVALUATED                 # no ours
    measured = v(ours=0.2, reg=0.3, llmc=0.5)[0]
    assert measured.startswith("device_hours: ") and "ours: MAPE 20 %" in measured and "llmc: MAPE 50 %" in measured
    assert check_validation(None)(None, "v", {})[2] == C.NOT_EVALUATED
    other = check_validation(_report(metrics={"ours": {"energy": {"mape": 0.1, "n": 3}},
                                              "reg": {"energy": {"mape": 0.2, "n": 3}}}))
    assert other(None, "v", {"quantity": "energy"})[2] == C.AGREES
    assert other(None, "v", {})[2] == C.NOT_EVALUATED                 # device_hours absent


def test_validation_carbon_check():
    from carbonscaling.experiments.paper import check_validation_carbon

    def entry(rid, **errs):
        return {"run_id": rid, "reported": {"total_tco2e": 50.0},
                "methods": {m: {"errors": {"total_tco2e": e}} for m, e in errs.items()}}

    def v(*entries):
        return check_validation_carbon(_report(carbon=list(entries)))(None, "v", {})

    assert v(entry("bloom", ours=-0.1, reg=0.3, llmc=-0.5))[2] == C.AGREES       # |errors| compared
    assert v(entry("bloom", ours=0.4, reg=-0.3, llmc=0.5))[2] == C.PARTLY
    assert v(entry("bloom", ours=0.6, reg=0.3, llmc=-0.5))[2] == C.DISAGREES
    assert v(entry("a", ours=0.1, reg=0.3), entry("b", ours=0.9, reg=0.3))[2] == C.PARTLY
    assert v(entry("a", ours=0.9, reg=0.3), entry("b", ours=0.9, llmc=0.3))[2] == C.DISAGREES
    assert v(entry("bloom", reg=0.3))[2] == C.NOT_EVALUATED                       # no "ours"
    assert v()[2] == C.NOT_EVALUATED
    assert "bloom: reported 50 tCO2e" in v(entry("bloom", ours=-0.1, reg=0.3))[0]
