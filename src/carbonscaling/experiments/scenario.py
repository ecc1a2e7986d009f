"""Declarative experiment scenarios: a small YAML file per experiment.

A scenario names the models swept (a scaling-law preset and either explicit
``d_model`` values or the parameter range a paper states), shared settings
(``base``: device, projection years, CPA growth, deadline, infeasibility policy,
training options, carbon accounting) and a list of ``series`` (curves or bars),
each overriding some of the shared settings. ``claims`` list what a paper says
about the experiment and how to check it (see :mod:`.claims`). Every field is
documented in docs/experiments.md; shipped scenarios live in ``scenarios/``.

:func:`load_scenario` reads and validates a file; any problem raises
:class:`~carbonscaling.errors.InputError` whose field is the path inside the
file (``series[2].carbon.ci``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from .._data import parse_yaml, read_user_yaml
from ..errors import InputError, from_validation
from ..specs import (MAX_DEADLINE_DAYS, CarbonSettings, HardwareSpec, LayoutPins, Recipe, RunSpec, SearchSettings,
                     SpecModel, build, partial, partial_fields)

_Strict = ConfigDict(extra="forbid", frozen=True)


# A series' overrides of a run's parts (carbonscaling.specs): every field of a part is a
# scenario field, optional (None: the base's value, else the spec's default).
Options = partial(Recipe, "Options", __name__)
Pins = partial(LayoutPins, "Pins", __name__)
Carbon = partial(CarbonSettings, "Carbon", __name__)
_OWN = {"device": (Optional[str], Field(default=None, description="Catalog device name (default B100).")),
        "preset": (Optional[str], Field(default=None, description="Scaling-law preset (default: models.preset).")),
        "on_infeasible": (Optional[Literal["skip", "extend"]], None),
        "options": (Options, Options()), "pins": (Pins, Pins()), "carbon": (Carbon, Carbon())}
# Flat keys: the hardware projection and the search settings (years_ahead, deadline_days, ...).
FLAT_PARTS = ("hardware", "search")
Settings = create_model("Settings", __base__=SpecModel, __module__=__name__, **_OWN,
                        **partial_fields(HardwareSpec, exclude=("device",)), **partial_fields(SearchSettings))
Settings.__doc__ = "What a series can set; the scenario's ``base`` gives the defaults."
# Scenario key of each RunSpec part that is nested (the others are flat keys of a series).
NESTED = {"recipe": "options", "pins": "pins", "carbon": "carbon"}


class Series(Settings):
    label: str = Field(min_length=1, max_length=60)
    kind: Literal["practical", "median", "ideal"] = "practical"
    ideal_flops: Literal["law", "model"] = "law"


class ParamsRange(BaseModel):
    model_config = _Strict
    min: float = Field(gt=0)
    max: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "ParamsRange":
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self


class Models(BaseModel):
    """The models swept: a preset and explicit widths, or the range of N a paper names."""

    model_config = _Strict
    preset: str = "cs-v1"
    d_model: Optional[list[int]] = Field(default=None, min_length=1, max_length=200)
    params: Optional[ParamsRange] = None

    @model_validator(mode="after")
    def _one_of(self) -> "Models":
        if (self.d_model is None) == (self.params is None):
            raise ValueError("give exactly one of d_model (a list) and params ({min, max})")
        return self


class Claim(BaseModel):
    """A paper's claim and how to test it (check types: carbonscaling.experiments.claims)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    claim: str = Field(min_length=1)
    check: str
    args: dict[str, Any] = {}
    note: str = ""


class Scenario(BaseModel):
    model_config = _Strict
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=60)
    title: str
    paper: str = ""
    figure: str = ""
    description: str = ""
    plot: Literal["loss_vs_carbon", "utilization_vs_params", "bars", "validation"] = "loss_vs_carbon"
    models: Optional[Models] = None
    base: Settings = Settings()
    series: list[Series] = Field(default_factory=list, max_length=50)
    fit: bool = False
    compare_to: Optional[str] = None
    claims: list[Claim] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)

    def resolved(self, s: Series) -> dict[str, Any]:
        """A series' full settings: the series' own values over ``base`` over the defaults."""
        b = self.base
        pick = lambda k, dflt: next((v for v in (getattr(s, k), getattr(b, k)) if v is not None), dflt)  # noqa: E731
        merge = lambda k: {**getattr(b, k).model_dump(exclude_none=True),  # noqa: E731
                           **getattr(s, k).model_dump(exclude_none=True)}
        out = {"label": s.label, "kind": s.kind, "ideal_flops": s.ideal_flops,
               "device": pick("device", "B100"), "preset": pick("preset", self.models.preset),
               "on_infeasible": pick("on_infeasible", "extend")}
        for part in FLAT_PARTS:
            cls = HardwareSpec if part == "hardware" else SearchSettings
            for k, info in cls.model_fields.items():
                if k != "device":
                    v = pick(k, info.default)
                    out[k] = float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        out.update(options=merge("options"), pins=merge("pins"), carbon=merge("carbon"))
        return out

    def run_spec(self, s: Series, d_model: int) -> RunSpec:
        """The run one point of series ``s`` describes (model at width ``d_model``)."""
        return run_spec(self.resolved(s), d_model)


def run_spec(r: dict[str, Any], d_model: int) -> RunSpec:
    """A RunSpec from resolved series settings (:meth:`Scenario.resolved`) at ``d_model``."""
    flat = {k: r[k] for k in [*HardwareSpec.model_fields, *SearchSettings.model_fields] if k in r}
    return build(RunSpec, {"preset": r["preset"], "d_model": d_model,
                           "hardware": {k: v for k, v in flat.items() if k in HardwareSpec.model_fields},
                           "search": {k: v for k, v in flat.items() if k in SearchSettings.model_fields},
                           "recipe": r["options"], "pins": r["pins"], "carbon": r["carbon"]})


# ---- model widths ----------------------------------------------------------------------
def width_ladder(lo: int = 512, hi: int = 1_572_864) -> list[int]:
    """Widths ``2^k`` and ``3 * 2^k`` (many divisors of the head count, so TP has choices)."""
    out, k = [], 0
    while 2**k <= hi:
        out += [w for w in (2**k, 3 * 2 ** (k - 1) if k else 0) if lo <= w <= hi]
        k += 1
    return sorted(set(out))


def widths_for_params(preset: str, lo: float, hi: float) -> list[int]:
    """Ladder widths spanning ``[lo, hi]`` in the preset's own N (``params_law``): the
    end points are the widths whose N is nearest (in log) to each bound."""
    from ..scaling import from_preset

    ladder, n = [], []
    for d in width_ladder():
        try:
            n.append(math.log(from_preset(preset, d).params_law))
        except Exception:  # past the preset's valid range (e.g. batch > 1e12 tokens)
            break
        ladder.append(d)
    first = min(range(len(n)), key=lambda i: abs(n[i] - math.log(lo)))
    last = min(range(len(n)), key=lambda i: abs(n[i] - math.log(hi)))
    return ladder[first:last + 1]


def model_widths(sc: Scenario, preset: str | None = None) -> list[int]:
    """The ``d_model`` values a scenario sweeps."""
    m = sc.models
    if m.d_model is not None:
        return list(m.d_model)
    return widths_for_params(preset or m.preset, m.params.min, m.params.max)


# ---- loading -------------------------------------------------------------------------------
def _loc(loc: tuple) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not str(p).startswith(("function-", "union[", "literal[")) and not str(p) in ("float", "str", "int"):
            out += f".{p}" if out else str(p)
    return out or "scenario"


def _from_validation(err: ValidationError) -> InputError:
    return from_validation(err, loc=_loc)


def scenario_from_mapping(data: Any, origin: str = "scenario") -> Scenario:
    """Validate a mapping and check names (presets, devices, regions) against the catalogs."""
    if not isinstance(data, dict):
        raise InputError(origin, f"must be a mapping of scenario fields, got {type(data).__name__}")
    try:
        sc = Scenario(**data)
    except ValidationError as err:
        raise _from_validation(err) from None
    check_structure(sc)
    check_names(sc)
    return sc


def check_structure(sc: Scenario) -> None:
    """Cross-field rules: models and series present, unique labels, compare_to names a series."""
    if sc.plot == "validation":
        check_claims(sc, [])
        return
    if sc.models is None:
        raise InputError("models", "required field is missing (preset and d_model or params)")
    if not sc.series:
        raise InputError("series", "needs at least one entry")
    labels = [s.label for s in sc.series]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise InputError(f"series[{i}].label", f"duplicate label {label!r}")
    if sc.compare_to is not None and sc.compare_to not in labels:
        raise InputError("compare_to", f"must name a series ({', '.join(labels)}), got {sc.compare_to!r}")
    check_claims(sc, labels)


def check_claims(sc: Scenario, labels: list[str]) -> None:
    """Every claim's check and arguments (:mod:`.claim_args`), and that series named without an
    ``experiment:`` prefix exist here; all before any search runs."""
    from .claim_args import validate_args
    from .claims import labels_of

    for i, c in enumerate(sc.claims):
        args = validate_args(c.check, c.args, f"claims[{i}].args")
        for ref in labels_of(args):
            if ":" not in ref and ref not in labels:
                raise InputError(f"claims[{i}].args", f"no series {ref!r} (series: {', '.join(labels)})")


def check_names(sc: Scenario) -> None:
    """Resolve every name a scenario uses, so a typo fails before any search runs."""
    from ..carbon import PAPER_ACCOUNTING, run_carbon
    from ..hardware import load_system
    from ..scaling import from_preset

    if sc.plot == "validation":
        return
    _named("models.preset", lambda: from_preset(sc.models.preset, 4096))
    for i, d in enumerate(sc.models.d_model or []):
        _named(f"models.d_model[{i}]", lambda: from_preset(sc.models.preset, d))
    for where, obj in [("base", sc.base)] + [(f"series[{i}]", s) for i, s in enumerate(sc.series)]:
        if obj.preset:
            _named(f"{where}.preset", lambda: from_preset(obj.preset, 4096))
        if obj.device:
            _named(f"{where}.device", lambda: load_system(obj.device))
    for i, s in enumerate(sc.series):
        r = sc.resolved(s)
        _check_pins(f"series[{i}].pins", r["pins"])
        kw = CarbonSettings(**r["carbon"]).carbon_kwargs()
        grid = "region" if "region" in r["carbon"] else "ci"
        _named(f"series[{i}].carbon", lambda: run_carbon(None, r["device"], n_devices=8, duration_h=1.0,
                                                           utilization=0.5, **{**PAPER_ACCOUNTING, **kw}), sub=True, grid=grid)


def _check_pins(where: str, pins: dict[str, Any]) -> None:
    """Pins the search cannot take fail here, before any search runs."""
    from ..search import PINNABLE

    for key in pins:
        name = "interleave" if key == "vp" and "vp" not in PINNABLE else key
        if name not in PINNABLE and key != "global_batch_tokens":
            raise InputError(f"{where}.{key}", f"cannot be pinned yet (pinnable: {', '.join(PINNABLE)})")


def _named(field: str, fn, sub: bool = False, grid: str = "ci") -> None:
    """Run ``fn``; an InputError it raises is re-raised under the scenario path ``field``
    (a region or country the grid intensity names is reported under the key it came from)."""
    try:
        fn()
    except InputError as err:
        name = f"{field}.{grid if err.field in ('region', 'country', 'ci') else err.field}" if sub else field
        raise InputError(name, err.message) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file (``1e11`` reads as a number)."""
    return scenario_from_mapping(read_user_yaml(path, "scenario"))


# ---- shipped scenarios ---------------------------------------------------------------------
def _scenario_dir():
    return resources.files("carbonscaling.experiments") / "scenarios"


@lru_cache(maxsize=1)
def shipped_names() -> tuple[str, ...]:
    """Names of the shipped scenarios, in report order (the ``order`` list in index.yaml)."""
    index = parse_yaml((_scenario_dir() / "index.yaml").read_text(encoding="utf-8"))
    return tuple(index["order"])


def shipped_path(name: str) -> Path:
    return Path(str(_scenario_dir() / f"{name}.yaml"))


def shipped_scenarios(only: list[str] | None = None) -> list[Scenario]:
    """The shipped scenarios (all, or those named in ``only``, in report order)."""
    from ..errors import UnknownNameError

    names = shipped_names()
    if only:
        for o in only:
            if o not in names:
                raise UnknownNameError("only", o, names)
        names = tuple(n for n in names if n in set(only))
    return [load_scenario(shipped_path(n)) for n in names]
