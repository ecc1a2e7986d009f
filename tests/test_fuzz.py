"""Fuzzing the public API with hypothesis: random models, devices, pinned layouts, deadlines
and carbon settings, and random junk for every option.

Properties: only the package's own errors (``CarbonScalingError``) are raised; every number
returned is finite; total = operational + embodied; a feasible search meets its deadline;
devices = the product of the layout; carbon grows with grid intensity and PUE; the same
input gives the same answer; a searched layout, pinned, is accepted and evaluates the same.

The default run has a few hundred cases (~1 min on 2 cores); ``pytest -m slow`` runs the
same properties with ten times as many (thousands of cases).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import carbonscaling as cs
from carbonscaling.carbon import run_carbon
from carbonscaling.errors import CarbonScalingError, InfeasibleError, InputError
from carbonscaling.hardware import device_names

DEVICES = device_names()
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True)


def cases(n: int):
    """Hypothesis settings for ``n`` examples (x10 under the slow marker's tests)."""
    return settings(max_examples=n, **FAST)


# ---- strategies ---------------------------------------------------------------------------
@st.composite
def models(draw) -> dict[str, Any]:
    """Small-to-mid transformer shapes (dense or MoE) whose searches take well under a second."""
    head_dim = draw(st.sampled_from([64, 128]))
    n_heads = draw(st.integers(1, 32))
    d = head_dim * n_heads
    kv = draw(st.sampled_from([h for h in (1, 2, 4, 8, n_heads) if n_heads % h == 0]))
    m: dict[str, Any] = {"d_model": d, "n_layers": draw(st.integers(1, 48)), "n_heads": n_heads, "n_kv_heads": kv,
                         "d_ff": draw(st.sampled_from([2, 3, 4])) * d + draw(st.sampled_from([0, 128])),
                         "ffn_gated": draw(st.booleans()), "vocab": draw(st.sampled_from([32000, 50257, 128256])),
                         "seq_len": draw(st.sampled_from([512, 2048, 4096, 8192])),
                         "tokens": draw(st.floats(1e8, 3e11))}
    if draw(st.booleans()):
        e = draw(st.sampled_from([2, 4, 8, 16]))
        m.update(n_experts=e, top_k=draw(st.integers(1, min(e, 2))))
    return m


_carbon_common = st.fixed_dictionaries({}, optional={
    "pue": st.floats(1.0, 3.0),
    "ci": st.one_of(st.floats(0.0, 2000.0), st.sampled_from(["us-east5", "europe-north1", "asia-south1"])),
    "lifetime_years": st.floats(0.01, 50.0),
    "embodied_mode": st.sampled_from(["paper", "vendor"]),
    "infrastructure": st.booleans(),
    "include_embodied": st.booleans(),
    "lifetime_policy": st.sampled_from(["refuse", "whole_run", "replace"]),
})
# the static/dynamic split (and alpha) belong to the papers' power model only
_paper_power = st.fixed_dictionaries({"power_model": st.just("paper")}, optional={
    "power_split": st.sampled_from(["default", "low_static"]), "alpha": st.floats(0.0, 10.0)})
_other_power = st.fixed_dictionaries({}, optional={"power_model": st.sampled_from(["measured", "nameplate"])})
carbon_settings = st.tuples(_carbon_common, st.one_of(_paper_power, _other_power)).map(lambda t: {**t[0], **t[1]})

pins = st.fixed_dictionaries({}, optional={
    "tp": st.sampled_from([1, 2, 4, 8]), "pp": st.sampled_from([1, 2, 4]), "dp": st.sampled_from([1, 2, 8, 64]),
    "zero": st.integers(0, 3), "microbatch": st.sampled_from([1, 2, 4]),
    "recompute": st.sampled_from(["none", "selective", "full"]),
})

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.sampled_from(["", " ", "1e999", "nan", "-0", "١٢", "H100", "us-east5"]),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


# ---- helpers --------------------------------------------------------------------------------
def finite_numbers(obj: Any, path: str = "") -> list[str]:
    """Paths of every non-finite float inside a JSON-like value."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in finite_numbers(v, f"{path}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in finite_numbers(v, f"{path}[{i}]")]
    return []


def layout_product_ok(lay: dict) -> bool:
    """devices = TP x CP x PP x DP (Megatron-Core; EP inside DP x CP) or TP x PP x DP x EP (cs-v1)."""
    cp = lay.get("cp", 1)
    megatron = lay["tp"] * cp * lay["pp"] * lay["dp"]
    v1 = lay["tp"] * lay["pp"] * lay["dp"] * lay["ep"]
    return lay["devices"] in (megatron, v1)


def estimate(model: dict, device: str, **kw):
    return cs.estimate(model=model, device=device, uncertainty=False, **kw)


def check_estimate(est, deadline_days: float, pinned: bool) -> dict:
    d = est.to_dict()
    assert not finite_numbers(d), finite_numbers(d)
    c = d["carbon"]
    assert c["total_tco2e"] == pytest.approx(c["operational_tco2e"] + c["embodied_tco2e"], rel=1e-9, abs=1e-12)
    assert c["total_tco2e"] >= 0 and c["operational_tco2e"] >= 0 and c["embodied_tco2e"] >= 0  # ci may be 0
    assert c["total_low_tco2e"] <= c["total_tco2e"] * (1 + 1e-9) <= c["total_high_tco2e"] * (1 + 1e-9)
    lay, perf = d["layout"], d["performance"]
    assert layout_product_ok(lay), lay
    assert 0 < perf["mfu"] <= 1
    if not pinned:  # a search answers only with a layout that meets the deadline
        assert perf["meets_deadline"] and perf["duration_days"] <= deadline_days * (1 + 1e-9)
    return d


# ---- properties ---------------------------------------------------------------------------
def prop_estimate(model, device, carbon, deadline, pin):
    try:
        est = estimate(model, device, deadline_days=deadline, **carbon, **pin)
    except CarbonScalingError as err:
        assert str(err) and "\n" not in str(err)
        event(f"{type(err).__name__}: {getattr(err, 'constraint', '') or getattr(err, 'field', '')}")
        return
    event("answered")
    d = check_estimate(est, deadline, pinned=bool(pin))
    for k, v in pin.items():  # what was pinned is what was evaluated
        assert d["layout"][k] == v, (k, v, d["layout"])


def prop_pinned_searched_layout(model, device, deadline, recipe=None):
    """A searched layout, pinned in full, is accepted and evaluates to the same answer; the
    same request twice gives the same answer (determinism). ``recipe``: training options that
    restrict the search (EP overlap: VP with PP; CPU offloading: PP 1, no recompute; ...)."""
    recipe = dict(recipe or {})
    if recipe.get("pipeline_layout") == TWO_RANKS:  # a pinned layout for this model: PP 2, uneven halves
        n = model["n_layers"]
        if n < 2:
            event("no answer")
            return
        recipe.update(pipeline_layout=f"Et*{n // 2 + 1}|t*{n - n // 2 - 1}L" if n > 2 else "Et|tL", pp=2)
    try:
        est = estimate(model, device, deadline_days=deadline, **recipe)
    except CarbonScalingError:
        event("no answer")
        return
    event(f"answered {sorted(recipe)}")
    d = est.to_dict()
    assert estimate(model, device, deadline_days=deadline, **recipe).to_dict() == d
    lay = d["layout"]
    from carbonscaling.specs import LayoutPins  # every pinnable part the layout has (None: all layers)

    pin = {k: lay[k] for k in LayoutPins.model_fields if lay.get(k) is not None}
    pin.update(global_batch=lay["global_batch_sequences"])
    again = estimate(model, device, deadline_days=deadline, **{**recipe, **pin}).to_dict()
    assert {k: again["layout"][k] for k in lay} == lay
    assert again["performance"]["step_time_s"] == pytest.approx(d["performance"]["step_time_s"], rel=1e-9)
    assert again["carbon"]["total_tco2e"] == pytest.approx(d["carbon"]["total_tco2e"], rel=1e-9)
    if lay.get("pipeline_layout") and "pipeline_layout" not in recipe:  # the searched split, pinned as a layout
        as_layout = estimate(model, device, deadline_days=deadline,
                             **{**recipe, **pin, "pipeline_layout": lay["pipeline_layout"]}).to_dict()
        assert as_layout["performance"]["step_time_s"] == pytest.approx(d["performance"]["step_time_s"], rel=1e-9)


def prop_carbon_monotone(device, n, hours, util, pue, ci, dpue, dci, carbon):
    base = dict(n_devices=n, duration_h=hours, utilization=util, **carbon)
    try:  # valid combinations only (power_split needs the paper power model; run vs lifetime; goodput)
        lo = run_carbon(None, device, pue=pue, ci=ci, **base)
    except CarbonScalingError as err:
        event(f"{type(err).__name__}: {getattr(err, 'field', '') or getattr(err, 'constraint', '')}")
        return
    event("answered")
    assert not finite_numbers(lo.to_dict())
    assert lo.total_tco2e == pytest.approx(lo.operational_tco2e + lo.embodied_tco2e, rel=1e-12)
    hi_ci = run_carbon(None, device, pue=pue, ci=min(2000.0, ci + dci), **base)
    hi_pue = run_carbon(None, device, pue=min(3.0, pue + dpue), ci=ci, **base)
    for hi in (hi_ci, hi_pue):
        assert hi.operational_tco2e >= lo.operational_tco2e * (1 - 1e-12)
        assert hi.embodied_tco2e == lo.embodied_tco2e  # neither touches embodied carbon
        assert hi.total_tco2e >= lo.total_tco2e * (1 - 1e-12)
    assert run_carbon(None, device, pue=pue, ci=ci, **base).to_dict() == lo.to_dict()


OPTIONS = ("d_model", "preset", "devices", "tp", "pp", "dp", "ep", "zero", "microbatch", "vp", "recompute",
           "global_batch", "global_batch_tokens", "precision", "deadline_days", "objective", "ci", "region", "pue",
           "lifetime_years", "alpha", "power_split", "embodied_mode", "years_ahead", "cpa_growth", "year",
           "flash_attention", "qat", "infrastructure", "fp8_attention", "pipeline_layout")


def prop_junk(option, value, device):
    """Any value for any option: an answer, or one of the package's errors naming a field."""
    kw = {option: value}
    model = "llama3.1-8b" if option not in ("d_model", "preset") else None
    if option == "d_model":
        kw["preset"] = "cs-v1"
    try:
        est = cs.estimate(model=model, device=device, uncertainty=False, **kw)
    except InfeasibleError as err:
        assert err.reason
        event("infeasible")
        return
    except CarbonScalingError as err:
        # one line, and bad input names the field it is about (str(err) alone is never empty)
        assert "\n" not in str(err) and str(err).strip()
        assert not isinstance(err, InputError) or err.field
        event("rejected")
        return
    event("answered")
    assert not finite_numbers(est.to_dict())


# ---- the tests: default sizes, and x10 under -m slow ----------------------------------------
GIVEN_ESTIMATE = given(models(), st.sampled_from(DEVICES), carbon_settings, st.floats(0.5, 36500.0), pins)
#: Options that restrict which layouts the search may return (each must stay pinnable).
TWO_RANKS = "two ranks"  # stands for a pipeline layout made for the drawn model (prop_pinned_searched_layout)
RECIPES = [{}, {"overlap_ep_comm": True}, {"precision": "fp8"}, {"cpu_offload_layers": 2},
           {"cuda_graph_scope": "none"}, {"recompute_modules": "core_attn,mlp"}, {"overlap_pp_comm": False},
           {"precision": "fp8", "fp8_attention": True}, {"pipeline_layout": TWO_RANKS}]
PINNED_DEVICES = st.sampled_from(["H100", "A100-80GB", "B200", "MI300X", "TPU-v5p", "H100-SXM", "GB200"])
GIVEN_PINNED = given(model=models(), device=PINNED_DEVICES, deadline=st.floats(1.0, 3650.0))
GIVEN_CARBON = given(st.sampled_from(DEVICES), st.one_of(st.integers(1, 10**5), st.integers(1, 10**12)),
                     st.floats(1e-3, 1e5), st.floats(1e-6, 1.0),
                     st.floats(1.0, 3.0), st.floats(0.0, 2000.0), st.floats(0.0, 2.0), st.floats(0.0, 2000.0),
                     carbon_settings.map(lambda c: {k: v for k, v in c.items() if k not in ("pue", "ci")}))
GIVEN_JUNK = given(st.sampled_from(OPTIONS), junk, st.sampled_from(["H100", "B200", "TPU-v5p"]))


def sized(default: int):
    """Run a fuzz test with ``default`` examples, and ten times as many under ``-m slow`` (``-long``)."""
    return pytest.mark.parametrize("n", [default, pytest.param(10 * default, marks=pytest.mark.slow)],
                                   ids=["default", "long"])


@sized(120)
def test_fuzz_estimate(n):
    cases(n)(GIVEN_ESTIMATE(prop_estimate))()


# every recipe by name, in both runs: a drawn recipe left CPU offloading and FP8 attention out of
# the fixed CI draw (hypothesis still draws the model, device and deadline)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: ",".join(r) or "no-options")
@sized(5)
def test_fuzz_searched_layout_accepted_when_pinned(recipe, n):
    def prop(model, device, deadline):
        prop_pinned_searched_layout(model, device, deadline, recipe)

    cases(n)(GIVEN_PINNED(prop))()


@sized(250)
def test_fuzz_carbon_monotone_in_ci_and_pue(n):
    cases(n)(GIVEN_CARBON(prop_carbon_monotone))()


@sized(250)
def test_fuzz_junk_options(n):
    cases(n)(GIVEN_JUNK(prop_junk))()
