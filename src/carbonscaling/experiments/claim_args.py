"""The arguments each claim check takes (:mod:`.claims`), validated when a scenario is loaded.

A scenario's claims are checked after every search has run; a bad argument
(``expect: abc``, ``series: [[H100]]``) must fail before that, with the path of the
field in the file. Each check has a pydantic model here; :func:`validate_args` returns
the arguments as plain values or raises :class:`~carbonscaling.errors.InputError`
naming ``claims[i].args.FIELD``.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InputError, from_validation

Label = str  # a series label, or ``experiment:label``


def Fraction(default: float):  # noqa: N802 - a Field factory
    """A tolerance or share (a fraction; > 1 only for very loose checks), with the check's default."""
    return Field(default=default, ge=0, le=10)


# Row columns a ``share``/``trend`` check may read (numbers in every feasible row).
COLUMNS = ("embodied_share", "mfu", "mfu_used", "total_tco2e", "operational_tco2e", "embodied_tco2e",
           "energy_kwh", "devices_used", "duration_days", "per_device_operational_tco2e",
           "per_device_embodied_tco2e", "loss", "params_law", "params_total", "params_active", "step_time_s")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info) -> Any:
        # pydantic reads true as 1.0 for float fields; a flag where a number goes is a mistake
        if isinstance(v, bool) and cls.model_fields[info.field_name].annotation not in (bool, Optional[bool]):
            raise ValueError("must be a number or a name, not true/false")
        return v


class _Pair(_Args):
    series: Label = Field(min_length=1)
    reference: Label = Field(min_length=1)


class RatioArgs(_Pair):
    expect: list[Optional[float]] = Field(min_length=1, max_length=2)
    tolerance: float = Fraction(0.0)


class BetweenArgs(_Args):
    series: Label = Field(min_length=1)
    lower: Label = Field(min_length=1)
    upper: Label = Field(min_length=1)


class FitCompareArgs(_Pair):
    alpha_tolerance: float = Field(default=0.25, ge=0, le=10)


class SeriesListArgs(_Args):
    series: list[Label] = Field(min_length=2, max_length=50)


class PerDeviceArgs(_Args):
    series: list[Label] = Field(min_length=2, max_length=50)


class ReductionArgs(_Pair):
    largest: Optional[int] = Field(default=None, ge=1)
    expect: Optional[float] = Field(default=None, ge=-10, le=1)
    tolerance: float = Fraction(0.1)
    less_than: Optional[Label] = None
    at_least: float = Field(default=0.0, ge=-10, le=1)
    everywhere: bool = False


class ReductionBySizeArgs(_Pair):
    threshold_params: float = Field(gt=0)


class HelpsLargestArgs(_Pair):
    threshold_tco2e: float = Field(gt=0)
    small_max: float = Fraction(0.05)
    large_min: float = Fraction(0.2)


class MarginalArgs(_Args):
    series: list[Label] = Field(min_length=1, max_length=50)
    reference: Label = Field(min_length=1)
    max_reduction: float = Field(default=0.1, ge=-10, le=1)
    tolerance: float = Fraction(0.01)


class ShareArgs(_Args):
    series: Label = Field(min_length=1)
    column: Literal[COLUMNS] = "embodied_share"  # type: ignore[valid-type]
    expect: float
    tolerance: float = Fraction(0.03)


class TrendArgs(_Args):
    series: Label = Field(min_length=1)
    column: Literal[COLUMNS]  # type: ignore[valid-type]
    direction: Literal["decreasing", "increasing"] = "decreasing"


class GapExceedsArgs(_Pair):
    others: list[Label] = Field(min_length=1, max_length=50)
    others_reference: Label = Field(min_length=1)


class ValidationBaselinesArgs(_Args):
    quantity: Literal["device_hours", "mfu", "tflops_per_device", "energy_kwh", "embodied_tco2e"] = "device_hours"


class NoArgs(_Args):
    pass


ARGS: dict[str, type[_Args]] = {
    "ratio": RatioArgs, "between": BetweenArgs, "fit_compare": FitCompareArgs, "ordering": SeriesListArgs,
    "diminishing": SeriesListArgs, "per_device_total": PerDeviceArgs, "reduction": ReductionArgs,
    "reduction_by_size": ReductionBySizeArgs, "helps_largest": HelpsLargestArgs, "marginal": MarginalArgs,
    "share": ShareArgs, "trend": TrendArgs, "gap_exceeds": GapExceedsArgs,
    "validation_baselines": ValidationBaselinesArgs, "validation_carbon": NoArgs,
}


def validate_args(check: str, args: Any, where: str) -> dict[str, Any]:
    """``args`` of a ``check`` as plain values; an InputError naming ``where.FIELD`` if bad.

    Only the keys given are returned (defaults stay the checks' own), with numbers as numbers
    (``"1e5"`` from a YAML 1.1 reader becomes 100000.0).
    """
    model = ARGS.get(check)
    if model is None:
        raise InputError(where.rsplit(".", 1)[0] + ".check", f"unknown check {check!r} "
                                                            f"(known: {', '.join(sorted(ARGS))})")
    if not isinstance(args, dict):
        raise InputError(where, f"must be a mapping of the check's arguments, got {type(args).__name__}")
    try:
        parsed = model(**args)
    except ValidationError as err:
        raise from_validation(err, where, loc=_loc) from None
    except TypeError as err:  # non-string keys
        raise InputError(where, f"bad argument names ({err})") from None
    if "expect" in args and check == "ratio":
        lo, hi = (list(parsed.expect) + [None])[:2]
        if lo is not None and hi is not None and hi < lo:
            raise InputError(f"{where}.expect", f"upper bound {hi:g} is below the lower bound {lo:g}")
    return {k: getattr(parsed, k) for k in args}


def _loc(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
