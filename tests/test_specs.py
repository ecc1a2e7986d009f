"""The run description (carbonscaling.specs): one place for every option of a run.

The same run through the keyword API, a RunSpec and the CLI gives the same answer; every
RunSpec field is a CLI option (the generated block is current) with the range of the spec;
bad values give one line naming the option.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import carbonscaling as cs
from carbonscaling import specs, specs_gen
from carbonscaling.chain import estimate, run
from carbonscaling.cli import option_name
from carbonscaling.errors import InputError
from carbonscaling.specs import CarbonSettings, LayoutPins, Recipe, RunSpec, SearchSettings, flat_fields

RUN = dict(preset="cs-v1", d_model=6144, device="B100", deadline_days=60.0, pue=1.2, region="us-central1",
           precision="fp8", zero=1)


def test_kwargs_runspec_and_cli_json_agree(capsys):
    by_kwargs = estimate(**RUN).to_dict()
    spec = RunSpec(preset="cs-v1", d_model=6144, hardware=cs.HardwareSpec(device="B100"),
                   pins=LayoutPins(zero=1), recipe=Recipe(precision="fp8"),
                   search=SearchSettings(deadline_days=60), carbon=CarbonSettings(pue=1.2, region="us-central1"))
    by_spec = run(spec).to_dict()
    assert estimate(spec).to_dict() == by_spec
    code, out, err = cli(capsys, "estimate", "--preset", "cs-v1", "--d-model", "6144", "--device", "B100",
                         "--deadline-days", "60", "--pue", "1.2", "--region", "us-central1", "--precision", "fp8",
                         "--zero", "1", "--json")
    assert code == 0, err
    by_cli = json.loads(out)
    norm = lambda d: json.loads(json.dumps(d, default=str))  # noqa: E731
    assert norm(by_kwargs) == norm(by_spec) == by_cli
    assert by_cli["layout"]["zero"] == 1 and by_cli["settings"]["options"]["precision"] == "fp8"
    used = by_cli["used"]
    assert used["pue"] == 1.2 and used["region"] == "us-central1" and used["deadline_days"] == 60
    assert "us-central1" in used["ci_source"] and "pue" not in used["defaults"]
    assert {"lifetime_years", "objective"} <= set(used["defaults"]) and "device" not in used["defaults"]


def test_used_reports_the_defaults(capsys):
    code, out, err = cli(capsys, "estimate", "--preset", "cs-v1", "--d-model", "3072", "--json")
    assert code == 0, err
    used = json.loads(out)["used"]
    assert used["device"] == "H100" and used["deadline_days"] == 90 and used["pue"] == 1.1
    assert used["ci_g_per_kwh"] == pytest.approx(323.05) and "default" in used["ci_source"]
    assert {"device", "deadline_days", "ci", "pue", "lifetime_years", "precision"} <= set(used["defaults"])
    assert used["model_from"] == "preset cs-v1 at d_model 3072"
    code, out, _ = cli(capsys, "estimate", "--preset", "cs-v1", "--d-model", "3072")
    assert code == 0 and "grid intensity" in out and "(default)" in out


def test_flat_names_are_unique_and_route_to_their_part():
    fields = flat_fields()
    n_parts = sum(len(specs.PART_CLASSES[p].model_fields) for p in specs.PARTS)
    assert len(fields) == n_parts + len(specs.TOP_FIELDS)
    s = RunSpec.from_kwargs(tp=4, interleave=2, qat=True, objective="carbon", lifetime_years=4, years_ahead=2)
    assert (s.pins.tp, s.pins.vp, s.recipe.qat, s.search.objective, s.carbon.lifetime_years,
            s.hardware.years_ahead) == (4, 2, True, "carbon", 4, 2)
    assert s.explicit() == {"tp", "vp", "qat", "objective", "lifetime_years", "years_ahead"}
    assert RunSpec.from_kwargs(**s.flat()) == s
    t = s.replace(tp=2, pue=1.3)
    assert (t.pins.tp, t.carbon.pue, t.pins.vp) == (2, 1.3, 2) and t.explicit() == s.explicit() | {"pue"}
    with pytest.raises(InputError):
        s.replace(tp=0)


@pytest.mark.parametrize("command", sorted(specs.cli_blocks()))
def test_cli_block_is_generated_from_the_specs(command):
    """Adding a spec field without regenerating the CLI fails here (run the command below)."""
    assert specs_gen.cli_block_in_file(command) == specs_gen.cli_block(command), \
        "run: python -m carbonscaling.specs --write-cli"


def test_carbon_command_takes_every_run_carbon_setting(capsys):
    """`carbonscaling carbon` reads the same CarbonSettings: a setting changes its answer."""
    base = ["carbon", "--device", "H100", "-n", "8", "-u", "0.5", "--duration-hours", "10", "--json"]
    code, out, err = cli(capsys, *base)
    ref = json.loads(out)
    assert code == 0, err
    for args in (["--pue", "1.5"], ["--region", "europe-north1"], ["--ci", "50"], ["--lifetime", "3"],
                 ["--alpha", "0.5", "--power-model", "paper"], ["--power-split", "low_static", "--power-model", "paper"],
                 ["--no-infrastructure"], ["--no-embodied"], ["--embodied-mode", "vendor", "--vendor-kg", "500"],
                 ["--power-model", "nameplate"], ["--allocation", "node", "-n", "4"], ["--cooling", "liquid"],
                 ["--goodput", "0.5"], ["--restart-minutes", "60", "-n", "4096"], ["--interruptions", "0.01"],
                 ["--checkpoint-minutes", "5", "-n", "4096"], ["--evaluation-fraction", "0.1"]):
        code, out, err = cli(capsys, *base, *args)
        assert code == 0, (args, err)
        assert json.loads(out)["total_tco2e"] != ref["total_tco2e"], args
    code, out, err = cli(capsys, *base, "--pue", "7")
    assert code == 2 and err.startswith("error: pue (--pue): must be a finite number in [1, 3]")


def test_every_field_is_an_estimate_option():
    import typer.main

    from carbonscaling.cli import app

    cmd = next(c for c in typer.main.get_command(app).commands.values() if c.name == "estimate")
    opts = {o for p in cmd.params for o in p.opts + p.secondary_opts}
    for name, (_part, info) in flat_fields().items():
        assert specs.cli_option(name, info) in opts, name
        assert option_name(name) == specs.cli_option(name, info)


NUMERIC = [n for n, (_p, i) in flat_fields().items() if specs.number_kind(i) and specs.bounds(i)[1] is not None]


@pytest.mark.parametrize("name", NUMERIC)
def test_out_of_range_value_names_the_cli_option(name, capsys):
    info = flat_fields()[name][1]
    lo, hi, _lo_open, _hi_open = specs.bounds(info)
    opt = specs.cli_option(name, info)
    for bad in (str(hi * 10 + 1), "abc", "nan"):
        code, out, err = cli(capsys, "estimate", "--preset", "cs-v1", "--d-model", "3072", opt, bad)
        assert code == 2 and out == "" and err.count("\n") == 1, (name, bad, err)
        assert err.startswith(f"error: {name} ({opt}): must be a ") and specs.range_text(info) in err
    with pytest.raises(InputError) as e:
        RunSpec.from_kwargs(**{name: hi * 10 + 1})
    assert e.value.field == name


def test_bad_api_input_is_one_typed_error():
    for kw in ({"tp": True}, {"pue": "1.2"}, {"interleave": 2.5}, {"recompute": "some"}, {"nope": 1}):
        with pytest.raises(InputError):
            RunSpec.from_kwargs(**kw)
    with pytest.raises(InputError, match="RunSpec alone"):
        estimate(RunSpec(preset="cs-v1", d_model=3072), tp=2)
    with pytest.raises(InputError, match="tpp"):
        estimate(preset="cs-v1", d_model=3072, tpp=2)
    with pytest.raises(InputError, match="ci"):
        estimate(preset="cs-v1", d_model=3072, ci=300, region="us-east5")


def test_carbon_ranges_agree_with_run_carbon():
    """The spec's ranges are run_carbon's: the bounds are accepted, just outside rejected."""
    from carbonscaling.carbon import run_carbon

    base = dict(n_devices=8, duration_h=1.0, utilization=0.5, power_model="paper")  # alpha: the papers' model
    for name in ("pue", "lifetime_years", "alpha", "goodput", "restart_minutes", "checkpoint_minutes",
                 "evaluation_fraction", "development_overhead", "interruptions_per_device_day"):
        lo, hi, lo_open, _ = specs.bounds(CarbonSettings.model_fields[name])
        run_carbon(None, "H100", **base, **{name: hi})
        with pytest.raises(InputError):
            run_carbon(None, "H100", **base, **{name: hi * 1.001})
        if not lo_open:
            run_carbon(None, "H100", **base, **{name: lo})
        with pytest.raises(InputError):
            run_carbon(None, "H100", **base, **{name: lo - 1e-3 if not lo_open else lo})


def test_every_pin_is_searched_or_named_as_not_modelled():
    """Each LayoutPins field reaches the search under a name it knows, or the search's error names it."""
    from carbonscaling.chain import search_pins
    from carbonscaling.scaling import from_preset
    from carbonscaling.search import PINNABLE

    model = from_preset("cs-v1", 3072)
    for k in LayoutPins.model_fields:
        value = 1 if k != "recompute" else "full"
        if k == "global_batch_tokens":
            value = 4 * model.seq_len
        pinned = search_pins(LayoutPins(**{k: value}), model)
        (name,) = pinned
        if name in PINNABLE:
            assert name == k or (k, name) in (("vp", "interleave"), ("global_batch_tokens", "global_batch"))
            continue
        with pytest.raises(InputError) as e:
            estimate(preset="cs-v1", d_model=3072, **{k: value})
        assert e.value.field == k


# ---- scenario files ------------------------------------------------------------------------
SAMPLES = {"ci": 100.0, "region": "us-east5", "device": "H100", "year": 2024, "model": None,
           "recompute_modules": ("mla_up_proj", "mlp"), "cuda_graph_scope": ("attn", "moe_router"),
           "pipeline_layout": "Et*4|(t*4|)*14tmL"}


def sample_value(name: str):
    """A valid value of a field other than its default."""
    from typing import Literal, Union, get_args, get_origin

    if name in SAMPLES:
        return SAMPLES[name]
    info = flat_fields()[name][1]
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) is Union else [ann]
    if args[0] is bool:
        return not info.default
    if get_origin(args[0]) is Literal:
        return next(c for c in reversed(get_args(args[0])) if c != info.default)
    lo, hi, lo_open, _ = specs.bounds(info)
    v = (lo or 0) + 1 if hi is None or (lo or 0) + 1 <= hi else hi
    v = 2 if specs.number_kind(info) == "int" and (lo or 0) < 2 <= hi else v
    return int(v) if specs.number_kind(info) == "int" else float(v)


def scenario_key(name: str) -> tuple[str, ...]:
    """Where a flat RunSpec field lives in a scenario series."""
    part = flat_fields()[name][0]
    from carbonscaling.experiments.scenario import NESTED

    return (NESTED[part], name) if part in NESTED else (name,)


PART_FIELDS = [n for n, (p, _i) in flat_fields().items() if p is not None]


@pytest.mark.parametrize("name", PART_FIELDS)
def test_every_field_is_a_scenario_field_and_reaches_the_run(name):
    from carbonscaling.experiments.runner import expand
    from carbonscaling.experiments.scenario import scenario_from_mapping

    value = sample_value(name)
    series: dict = {"label": "a"}
    key = scenario_key(name)
    if len(key) == 2:
        series[key[0]] = {key[1]: value}
    else:
        series[key[0]] = value
    if name == "region":
        series.setdefault("carbon", {})
    if name == "vendor_kg_per_device":
        series["carbon"]["embodied_mode"] = "vendor"
    if name == "year":  # a year applies to a region's intensity only
        series["carbon"]["region"] = "us-east5"
    data = {"name": "t", "title": "t", "models": {"preset": "cs-v1", "d_model": [1536]}, "series": [series]}
    from carbonscaling.search import PINNABLE

    if flat_fields()[name][0] == "pins" and name not in (*PINNABLE, "vp", "global_batch_tokens"):
        with pytest.raises(InputError, match="cannot be pinned"):  # schema field, search not there yet
            scenario_from_mapping(data)
        from carbonscaling.experiments.scenario import Scenario

        sc = Scenario(**data)
    else:
        sc = scenario_from_mapping(data)
    spec = sc.run_spec(sc.series[0], 1536)
    assert spec.flat()[name] == value
    job = expand(sc)[0].job
    part = flat_fields()[name][0]
    if part == "recipe":
        assert dict(job.options)[name] == value
    elif part == "pins":
        assert dict(job.pins)[name] == value
    elif name in ("deadline_days", "objective", "years_ahead", "device"):
        assert getattr(job, name) == value
    elif name == "cpa_growth":
        assert expand(sc)[0].settings["cpa_growth"] == value  # used by the carbon accounting
    else:
        assert expand(sc)[0].settings["carbon"][name] == value  # carbon accounting of the point


def test_scenario_rejects_bad_values_with_the_path():
    from carbonscaling.experiments.scenario import scenario_from_mapping

    base = {"name": "t", "title": "t", "models": {"preset": "cs-v1", "d_model": [1536]}}
    for series, where in (({"label": "a", "pins": {"tp": 0}}, "series[0].pins.tp"),
                          ({"label": "a", "pins": {"zero": True}}, "series[0].pins.zero"),
                          ({"label": "a", "carbon": {"pue": 9}}, "series[0].carbon.pue"),
                          ({"label": "a", "options": {"precision": "fp9"}}, "series[0].options.precision"),
                          ({"label": "a", "objective": "cheapest"}, "series[0].objective")):
        with pytest.raises(InputError) as e:
            scenario_from_mapping({**base, "series": [series]})
        assert e.value.field == where


# ---- serializers and --version ---------------------------------------------------------------
def test_layout_serializer_is_the_json_layout(capsys):
    from carbonscaling.perf.layout import Layout
    from carbonscaling.serialize import layout_label, layout_record

    lay = Layout(tp=8, pp=4, dp=2, ep=1, zero=1, microbatch=2, interleave=2, recompute="selective",
                 global_batch_sequences=64)
    rec = layout_record(lay)
    assert rec == {**lay.model_dump(), "devices": 64, "microbatches": 16}
    assert layout_label(lay) == "TP8 CP1 PP4 VP2 DP2 EP1 ZeRO-1 mb2 rc=selective" == lay.describe()
    est = estimate(preset="cs-v1", d_model=3072, device="B100")
    # plus the Megatron-Core pipeline layout the step was evaluated with (perf/pipeline_cost.py)
    assert est.to_dict()["layout"] == {**layout_record(est.result.layout), "pipeline_layout": est.result.pipeline_layout}


def test_version(capsys):
    import tomllib
    from pathlib import Path

    code, out, err = cli(capsys, "--version")
    assert code == 0 and out == f"carbonscaling {cs.__version__}\n" and err == ""
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert meta["version"] == cs.__version__


def test_docs_options_table_is_generated_from_the_specs():
    from carbonscaling.specs_gen import DOC_BEGIN, DOC_END, options_table

    # The checkout's docs (CI installs the package non-editable, so not next to the module).
    text = (Path(__file__).parents[1] / "docs" / "run-spec.md").read_text(encoding="utf-8")
    assert text.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0] == options_table(), \
        "run: python -m carbonscaling.specs --write-docs"


# ---- property: every numeric option accepts its range and rejects the rest ------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

from helpers import cli

NUMERIC_ALL = [n for n, (_p, i) in flat_fields().items() if specs.number_kind(i) and any(specs.bounds(i)[:2])]


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NUMERIC_ALL), x=st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_numeric_options_accept_their_range_and_reject_the_rest(name, x):
    info = flat_fields()[name][1]
    lo, hi, lo_open, hi_open = specs.bounds(info)
    kind = specs.number_kind(info)
    value = int(x) if kind == "int" and x == x and abs(x) < 1e18 and float(x).is_integer() else x
    inside = (x == x and abs(x) != float("inf") and (lo is None or x > lo or (x == lo and not lo_open))
              and (hi is None or x < hi or (x == hi and not hi_open)) and (kind == "float" or float(x).is_integer()))
    if inside:
        spec = RunSpec.from_kwargs(**{name: value})
        assert spec.flat()[name] == value and RunSpec.from_kwargs(**spec.flat()) == spec
    else:
        with pytest.raises(InputError) as e:
            RunSpec.from_kwargs(**{name: value})
        assert e.value.field == name and specs.range_text(info) in e.value.message
