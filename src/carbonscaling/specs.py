"""The typed description of a training run that every entry point shares.

A :class:`RunSpec` is what is trained (a catalog model, a model file or mapping, a
:class:`~carbonscaling.scaling.ModelSpec`, or a scaling-law preset at a width) plus five
frozen parts:

* :class:`HardwareSpec` - the device (catalog name, device file or mapping) and its projection;
* :class:`LayoutPins` - the parts of the parallel layout that are fixed (Megatron-Core names);
  the search chooses the rest;
* :class:`Recipe` - the training options every layout shares (precision, overlap, ...); it is
  :class:`carbonscaling.perf.options.TrainingOptions`, re-exported;
* :class:`SearchSettings` - the deadline and the layout objective;
* :class:`CarbonSettings` - the carbon accounting (grid intensity, PUE, lifetime, ...).

Each field carries its description, allowed range and CLI option (``json_schema_extra``
``cli``) in one place: ``carbonscaling estimate``'s options, the error lines that name the
option, the scenario schema (:func:`partial`) and :func:`carbonscaling.estimate`'s keyword
arguments are all derived from these classes, and the tests fail when they disagree.
Every field has a unique name across the parts, so a run is also a flat set of options
(:meth:`RunSpec.from_kwargs`, :meth:`RunSpec.flat`).

Adding an option: add a field to one part (with ``option(...)``), use it where it acts,
and regenerate what derives from it (:mod:`carbonscaling.specs_gen`:
``python -m carbonscaling.specs --write-cli --write-docs``).

Where things live: the field machinery that knows no part of a run (:func:`option`,
:class:`SpecModel`, the readers of one field's metadata, :func:`partial` schemas) is in
:mod:`carbonscaling.specs_fields` and re-exported here; this module holds the parts, the flat
names, help text, error lines and the CLI blocks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .errors import InputError, UnknownNameError, from_validation
from .perf.layout import RECOMPUTE_MODES, TrainingOptions
from .specs_fields import (_CONFIG, _DATA_DEFAULTS, SpecModel, _field_validators, _fmt,  # noqa: F401 - re-exported
                           _kind_text, bounds, choices, data_default_text, fold_choice, metavar, number_kind, option,
                           partial, partial_fields, range_text)

Recipe = TrainingOptions
"""The training recipe: software choices shared by every layout of a run (one class, two names)."""

MAX_DEADLINE_DAYS = 36500.0  # the search's own upper bound on a deadline (100 years)
_BIG = 1_000_000_000  # upper bound of a pinned layout part (search.py checks the same)


# ---- the parts -----------------------------------------------------------------------------
class HardwareSpec(SpecModel):
    """On what the run trains: a device and its projection into the future."""

    device: Any = option("H100", "Catalog device name (see `devices`), a device YAML file or a mapping.",
                         cli="--device", metavar="NAME")
    years_ahead: float = option(0.0, "Project the device this many years ahead (v1 Table 1 rates).",
                                cli="--years-ahead", metavar="Y", ge=0, le=50)
    cpa_growth: float = option(0.0, "Yearly growth of carbon per area for the projection (v2 EUV case: 0.1).",
                               cli="--cpa-growth", metavar="G", ge=-0.5, le=2)


class LayoutPins(SpecModel):
    """Parts of the parallel layout that are fixed (None: the search chooses).

    Megatron-Core names: ``devices`` = TP x CP x PP x DP; ``vp`` virtual pipeline stages
    (``interleave`` accepted as an alias). Whether a part can be pinned is the search's
    to say (:data:`carbonscaling.search.PINNABLE`): a part it does not model yet is
    rejected with an error naming it.
    """

    devices: Optional[int] = option(None, "Pin the device count.", metavar="N", ge=1, le=_BIG)
    tp: Optional[int] = option(None, "Pin tensor parallelism.", metavar="N", ge=1, le=_BIG)
    pp: Optional[int] = option(None, "Pin pipeline parallelism.", metavar="N", ge=1, le=_BIG)
    dp: Optional[int] = option(None, "Pin data parallelism.", metavar="N", ge=1, le=_BIG)
    cp: Optional[int] = option(None, "Pin context parallelism.", metavar="N", ge=1, le=_BIG)
    ep: Optional[int] = option(None, "Pin expert parallelism.", metavar="N", ge=1, le=_BIG)
    etp: Optional[int] = option(None, "Pin expert tensor parallelism.", metavar="N", ge=1, le=_BIG)
    vp: Optional[int] = option(None, "Pin virtual pipeline stages per device (interleaving).", metavar="N",
                               alias=("vp", "interleave"), ge=1, le=_BIG)
    zero: Optional[int] = option(None, "Pin the ZeRO stage (4 = hierarchical ZeRO-3).", metavar="N", ge=0, le=4)
    fsdp: Optional[int] = option(None, "Pin the FSDP sharding group size (0 = off).", metavar="N", ge=0, le=_BIG)
    microbatch: Optional[int] = option(None, "Pin the microbatch size (sequences).", metavar="N", ge=1, le=_BIG)
    recompute: Optional[Literal[RECOMPUTE_MODES]] = option(None, "Pin activation recompute.",
                                                           metavar="none|selective|full")
    recompute_layers: Optional[int] = option(None, "Pin the layers per stage recomputed under full recompute.",
                                             metavar="N", ge=0, le=_BIG)
    global_batch: Optional[int] = option(None, "Pin the global batch in sequences.", metavar="N", ge=1, le=_BIG)
    global_batch_tokens: Optional[float] = option(None, "Pin the global batch in tokens.", metavar="T",
                                                  gt=0, le=1e12)

    def pinned(self) -> dict[str, Any]:
        """The pinned parts (non-None), by field name."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SearchSettings(SpecModel):
    """What the layout search optimises, and by when the run must finish."""

    deadline_days: float = option(90.0, "Maximum training duration in days.", metavar="DAYS", gt=0,
                                  le=MAX_DEADLINE_DAYS)
    objective: Literal["fastest", "carbon"] = option("fastest", "Layout objective at the minimal device count.",
                                                     metavar="fastest|carbon")


class CarbonSettings(SpecModel):
    """Carbon accounting. ``None`` takes the default of data/power.yaml (reported as used).

    Every field except those in :attr:`NOT_FOR_RUN_CARBON` is a keyword argument of
    :func:`carbonscaling.carbon.run_carbon` (``region`` is passed as its ``ci``).
    """

    ci: Optional[Union[float, str]] = option(
        None, "Grid intensity: g/kWh in [0, 2000], a region (us-east5) or, with codecarbon, an ISO3 country "
              "(FRA); default: data/power.yaml.", metavar="CI|REGION|ISO3")
    region: Optional[str] = option(None, "Google Cloud region (see `regions`); like --ci.", metavar="REGION")
    year: Optional[int] = option(None, "Year of the region table (default: latest).", metavar="YYYY",
                                 ge=1900, le=2200)
    pue: Optional[float] = option(None, "Power usage effectiveness (default: data/power.yaml).", metavar="X",
                                  ge=1, le=3)
    lifetime_years: Optional[float] = option(None, "Hardware lifetime in years (default: data/power.yaml).",
                                             cli="--lifetime", metavar="YEARS", ge=0.01, le=50)
    alpha: Optional[float] = option(None, "Dynamic-power scale of --power-model paper (default: data/power.yaml).",
                                    metavar="X", ge=0, le=10)
    power_split: Literal["default", "low_static"] = option(
        "default", "Device power split of --power-model paper: default (dynamic share of TDP from "
                   "data/power.yaml, static the rest) or low_static (the shares swapped, v1 Fig. 4).",
        metavar="default|low_static")
    embodied_mode: Literal["paper", "vendor"] = option(
        "paper", "Embodied carbon method: paper (die area x carbon per area + HBM per GB, v1/v2) or vendor "
                 "(--vendor-kg per device).", metavar="paper|vendor")
    vendor_kg_per_device: Optional[float] = option(None, "Per-device embodied kgCO2e (with --embodied-mode vendor).",
                                                   cli="--vendor-kg", metavar="KG", gt=0, le=1e5)
    infrastructure: bool = option(True, "Add v2's infrastructure share to embodied carbon.")
    include_embodied: bool = option(True, "Include embodied carbon.", cli="--embodied")
    median_carbon: bool = option(True, "Also report the median-latency layout (median duration among the layouts "
                                        "that fit at the chosen device count; v1 Fig. 5a).")
    # Energy of a real run (issue 10; docs/carbon.md): power model, allocation, lifetime, goodput.
    power_model: Optional[Literal["measured", "nameplate", "paper"]] = option(
        None, "Node power: measured (metered MLPerf node power, devices driven by their busy share; default), "
              "nameplate (TDP + system maximum: upper bound) or paper (static + dynamic x MFU).",
        metavar="measured|nameplate|paper")
    allocation: Optional[Literal["share", "node"]] = option(
        None, "A run on part of a node is charged its share (cloud slice; default) or whole nodes.",
        metavar="share|node")
    lifetime_policy: Optional[Literal["refuse", "whole_run", "replace"]] = option(
        None, "A run longer than the hardware lifetime: refuse (default; the deadline is capped at the lifetime), "
              "whole_run (charged once) or replace (charged replacements, the papers' rule).",
        metavar="refuse|whole_run|replace")
    cooling: Optional[Literal["auto", "air", "liquid"]] = option(
        None, "Server cooling: air adds fan power (default auto: GPU servers air, TPUs liquid).",
        metavar="auto|air|liquid")
    goodput: Optional[float] = option(
        None, "Fixed goodput in (0, 1]; 1 = steady state only (default: modelled from data/goodput.yaml).",
        metavar="G", gt=0, le=1)
    interruptions_per_device_day: Optional[float] = option(
        None, "Job interruptions per device-day (default: Llama 3's 5.27e-4, data/goodput.yaml).",
        cli="--interruptions", metavar="R", ge=0, le=1)
    restart_minutes: Optional[float] = option(None, "Minutes lost per restart (default: data/goodput.yaml).",
                                              metavar="MIN", ge=0, le=10080)
    checkpoint_minutes: Optional[float] = option(None, "Training stall per checkpoint save, minutes (default: "
                                                       "data/goodput.yaml).", metavar="MIN", ge=0, le=1440)
    evaluation_fraction: Optional[float] = option(None, "Share of wall clock in evaluation (default 0).",
                                                  metavar="F", ge=0, le=0.9)
    development_overhead: Optional[float] = option(
        None, "Development compute before the final run, as a multiple of its device-hours; reported "
              "separately, never added (default 0).", metavar="X", ge=0, le=100)
    # Decisions (carbonscaling.uncertainty / carbonscaling.footprint; docs/decisions.md).
    uncertainty: bool = option(True, "Monte-Carlo p5/p50/p95 bands and sensitivity ranking (off for fast sweeps).")
    uncertainty_samples: int = option(4096, "Monte-Carlo samples.", cli="--samples", metavar="N", ge=16, le=1_000_000)
    uncertainty_seed: int = option(0, "Monte-Carlo seed (same seed, same bands).", cli="--seed", metavar="S", ge=0,
                                   le=_BIG)
    contractual_ci: Optional[float] = option(None, "Market-based: contract intensity g/kWh for all consumption.",
                                             metavar="G", ge=0, le=2000)
    renewable_share: Optional[float] = option(None, "Market-based: share of consumption covered by certificates.",
                                              metavar="F", ge=0, le=1)
    residual_ci: Optional[float] = option(None, "Market-based: residual-mix g/kWh for uncovered consumption "
                                                "(default: the grid average).", metavar="G", ge=0, le=2000)
    wue_l_per_kwh: Optional[float] = option(None, "On-site water, litres per IT kWh (default: data/water.yaml).",
                                            cli="--wue", metavar="L", ge=0, le=20)
    ewif_l_per_kwh: Optional[float] = option(None, "Off-site water of generation, litres per kWh (default: "
                                                   "data/water.yaml).", cli="--ewif", metavar="L", ge=0, le=100)

    NOT_FOR_RUN_CARBON: ClassVar[tuple[str, ...]] = ("region", "median_carbon", "uncertainty", "uncertainty_samples",
                                                     "uncertainty_seed", "contractual_ci", "renewable_share",
                                                     "residual_ci", "wue_l_per_kwh", "ewif_l_per_kwh")

    def carbon_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~carbonscaling.carbon.run_carbon` (``None`` left out)."""
        out = {k: v for k, v in self.model_dump().items() if k not in self.NOT_FOR_RUN_CARBON and v is not None}
        if self.region is not None:
            if self.ci is not None:
                raise InputError("ci", "give either --ci or --region, not both")
            out["ci"] = self.region
        return out


class RunSpec(SpecModel):
    """A whole training run: the model and the five parts (see the module docstring)."""

    model: Any = option(None, "Catalog model name (see `models`), a model YAML file, a mapping or a ModelSpec.",
                        metavar="NAME")
    preset: Optional[str] = option(None, "Scaling-law preset: cs-v1, cs-v1-aggressive-batch, cs-v2.",
                                   metavar="NAME")
    d_model: Optional[int] = option(None, "Model width for --preset.", metavar="N", ge=1, le=_BIG)
    hardware: HardwareSpec = HardwareSpec()
    pins: LayoutPins = LayoutPins()
    recipe: Recipe = Recipe()
    search: SearchSettings = SearchSettings()
    carbon: CarbonSettings = CarbonSettings()

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RunSpec:
        """A RunSpec from flat options (``tp=8, pue=1.2, ...``); ``None`` means the default."""
        parts: dict[str, dict[str, Any]] = {p: {} for p in PARTS}
        top: dict[str, Any] = {}
        where = flat_fields()
        for key, value in kwargs.items():
            name = ALIASES.get(key, key)
            if name not in where:
                raise UnknownNameError("option", key, where)
            if value is None:
                continue
            part, info = where[name]
            (parts[part] if part else top)[name] = fold_choice(info, value)
        return build(cls, {**top, **{p: v for p, v in parts.items() if v}})

    def flat(self) -> dict[str, Any]:
        """Every option by its flat name (defaults included)."""
        out = {k: getattr(self, k) for k in TOP_FIELDS}
        for p in PARTS:
            out.update(dict(getattr(self, p)))
        return out

    def replace(self, **options: Any) -> RunSpec:
        """A validated copy with some flat options changed (``spec.replace(tp=4, pue=1.3)``);
        unlike ``model_copy(update=...)`` it checks the new values and keeps track of defaults."""
        given = {k: v for k, v in self.flat().items() if k in self.explicit()}
        return RunSpec.from_kwargs(**{**given, **options})

    def explicit(self) -> set[str]:
        """Flat names of the options that were given (not left to their defaults)."""
        out = {k for k in self.model_fields_set if k in TOP_FIELDS}
        for p in PARTS:
            out |= getattr(self, p).model_fields_set
        return out


PARTS: tuple[str, ...] = ("hardware", "pins", "recipe", "search", "carbon")
PART_CLASSES: dict[str, type[BaseModel]] = {"hardware": HardwareSpec, "pins": LayoutPins, "recipe": Recipe,
                                            "search": SearchSettings, "carbon": CarbonSettings}
TOP_FIELDS: tuple[str, ...] = ("model", "preset", "d_model")
ALIASES: dict[str, str] = {"interleave": "vp", "lifetime": "lifetime_years", "embodied": "include_embodied"}


@lru_cache(maxsize=1)
def flat_fields() -> dict[str, tuple[str | None, FieldInfo]]:
    """``{flat name: (part or None, FieldInfo)}`` of every RunSpec option; names are unique."""
    out: dict[str, tuple[str | None, FieldInfo]] = {k: (None, RunSpec.model_fields[k]) for k in TOP_FIELDS}
    for part in PARTS:
        for name, info in PART_CLASSES[part].model_fields.items():
            if name in out:  # pragma: no cover - a design error, caught by the tests
                raise TypeError(f"option {name!r} is defined twice ({out[name][0]} and {part})")
            out[name] = (part, info)
    return out


# ---- field metadata ------------------------------------------------------------------------
def cli_option(name: str, info: FieldInfo | None = None) -> str:
    """The CLI option of a flat field name (``lifetime_years`` -> ``--lifetime``)."""
    info = info or flat_fields()[name][1]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return extra.get("cli") or "--" + name.replace("_", "-")


def help_text(name: str, info: FieldInfo | None = None) -> str:
    """CLI help of a field: description, allowed range, default."""
    info = info or flat_fields()[name][1]
    text = (info.description or "").strip()
    stated = data_default_text(name)
    if stated:
        file = stated.rsplit(", ", 1)[1]
        text = text.replace(f"default: {file}", f"default: {stated}")
    rng = range_text(info)
    if rng:
        text += f" {_kind_text(number_kind(info) or 'float').capitalize()} in {rng}."
    dflt = info.default
    if isinstance(dflt, bool) and "default" not in text.lower():
        text += f" Default: {'on' if dflt else 'off'}."
    elif dflt is not None and "default" not in text.lower():
        shown = _fmt(dflt) if isinstance(dflt, (int, float)) else ",".join(dflt) if isinstance(dflt, tuple) else dflt
        text += f" Default: {shown}."
    return text.strip()



# ---- validation --------------------------------------------------------------------------
def spec_error(err: ValidationError) -> InputError:
    """A RunSpec validation error as one line naming the flat field (which names the CLI option)."""
    first = err.errors()[0]
    path = [str(p) for p in first.get("loc", ()) if not isinstance(p, int)]
    name = ALIASES.get(path[-1], path[-1]) if path else "run"
    fields = flat_fields()
    if name in fields and number_kind(fields[name][1]):  # every error of a number: its kind and range
        info = fields[name][1]
        rng = range_text(info)
        return InputError(name, f"must be {_kind_text(number_kind(info))}{' in ' + rng if rng else ''}, "
                                f"got {first.get('input')!r}")
    if name in fields:
        return from_validation(err, loc=lambda _loc: name)
    return from_validation(err)


def build(cls: type[BaseModel], data: dict[str, Any]) -> Any:
    """``cls(**data)`` with a validation error turned into one :class:`InputError` line."""
    try:
        return cls(**data)
    except ValidationError as err:
        raise spec_error(err) from None


# ---- the CLI blocks ------------------------------------------------------------------------
# Options the CLI spells by hand (two options for one field, short flags): model, device.
CLI_BY_HAND: tuple[str, ...] = ("model", "device")


def cli_blocks() -> dict[str, tuple[str, list[str]]]:
    """``{command: (module file, fields)}`` of the CLI parameters generated from the specs:
    ``estimate`` takes every option of a run, ``carbon`` the carbon settings run_carbon takes."""
    carbon = [k for k in CarbonSettings.model_fields if k not in CarbonSettings.NOT_FOR_RUN_CARBON or k == "region"]
    return {"estimate": ("cli_estimate.py", [n for n in flat_fields() if n not in CLI_BY_HAND]),
            "carbon": ("cli_carbon.py", carbon)}


def cli_types() -> dict[str, tuple[str, list[str]]]:
    """``{group: (module file, fields)}`` of the option types generated from the specs
    (``PueOpt = Annotated[...]``, named by :func:`cli_type_name`) for commands that take a
    subset of a run's options: the decision commands (cli_decide.py, cli_grid.py) and ``regions``."""
    return {"shared": ("cli.py", ["preset", "d_model", "deadline_days", "ci", "region", "year", "pue",
                                  "lifetime_years", "embodied_mode", "precision"])}


def cli_type_name(name: str) -> str:
    """The option type of a flat field: ``lifetime_years`` -> ``LifetimeYearsOpt``."""
    return "".join(part.capitalize() for part in name.split("_")) + "Opt"


def cli_values(params: dict[str, Any], command: str = "estimate", names: list[str] | None = None) -> dict[str, Any]:
    """The generated parameters of ``command`` (or the flat fields ``names``) from a command's
    ``locals()``, numbers converted from text (text that is not a number is kept, for the
    spec to reject with its range)."""
    from .cli import integer, number

    out = {}
    for name in cli_blocks()[command][1] if names is None else names:
        value = params[name]
        kind = number_kind(flat_fields()[name][1])
        out[name] = (integer(value) if kind == "int" else number(value)) if kind and value is not None else value
    return out


if __name__ == "__main__":  # pragma: no cover - `python -m carbonscaling.specs --write-cli --write-docs`
    from .specs_gen import main

    main()
