"""Request models of the JSON API, generated from the run specs (:mod:`carbonscaling.specs`).

``EstimateRequest`` is :class:`~carbonscaling.specs.RunSpec` as flat JSON: every option of
``carbonscaling estimate`` by its Python name (``tp``, ``vp`` or ``interleave``, ``deadline_days``,
``pue``, ...), with each field's type, range and description taken from the spec classes, so the
OpenAPI schema, the CLI and :func:`carbonscaling.estimate` never disagree. ``CarbonRequest`` is
``carbonscaling carbon``: the hardware and carbon parts plus the run's size and length.

Two differences from the Python API, because the service runs on someone else's machine:
``model`` and ``device`` are catalog names only (the Python API also reads YAML files from
disk), and a model file's *text* can be pasted as ``model_yaml``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator

from ..perf.options import LIST_OPTION_PARSERS
from ..specs import CarbonSettings, HardwareSpec, flat_fields

MAX_YAML_CHARS = 65_536
_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
# Options the service does not take as given by the spec (replaced below, or Python-only).
_REPLACED = {"model", "device", "median_carbon"}


def _catalog_name(value: Optional[str]) -> Optional[str]:
    if value is not None and ("/" in value or "\\" in value or value.lower().endswith((".yaml", ".yml"))):
        raise ValueError("must be a catalog name (the service reads no files; paste a model as model_yaml)")
    return value


class _Choice(BaseModel):
    """What is trained and on what: catalog names only, or a pasted model YAML."""

    model_config = _CONFIG
    model: Optional[str] = Field(default=None, max_length=100,
                                 description="Catalog model name (GET /api/models); or use preset + d_model, "
                                             "or model_yaml.")
    model_yaml: Optional[str] = Field(default=None, max_length=MAX_YAML_CHARS,
                                      description="The text of a model YAML file: ModelSpec fields.")
    device: str = Field(default="H100", max_length=100, description="Catalog device name (GET /api/devices).")

    _names = field_validator("model", "device")(classmethod(lambda cls, v: _catalog_name(v)))


def _fields(names) -> dict[str, tuple[Any, Any]]:
    where = flat_fields()
    return {n: (_as_sent(n, where[n][1].annotation), where[n][1]) for n in names}


def _as_sent(name: str, annotation):
    """List-valued options (``recompute_modules``, ``cuda_graph_scope``) as a JSON list or as the
    CLI's comma-separated string, parsed by the spec's own parser
    (:data:`carbonscaling.perf.options.LIST_OPTION_PARSERS`) before the type check, so a wrong value
    is one 422 naming the field and the allowed values."""
    if get_origin(annotation) is not tuple:
        return annotation
    if name not in LIST_OPTION_PARSERS:  # a new list-valued option needs its parser there
        raise TypeError(f"{name}: a list-valued option without a parser in perf.options.LIST_OPTION_PARSERS")
    return Annotated[Union[annotation, str], BeforeValidator(LIST_OPTION_PARSERS[name])]


_ESTIMATE_FIELDS = [n for n in flat_fields() if n not in _REPLACED]
EstimateRequest = create_model(
    "EstimateRequest", __base__=_Choice,
    __doc__="``carbonscaling estimate``: the RunSpec's options, flat (see carbonscaling.specs).",
    **_fields(_ESTIMATE_FIELDS))

_CARBON_SPEC_FIELDS = [n for n in list(HardwareSpec.model_fields) + list(CarbonSettings.model_fields)
                       if n not in _REPLACED]


class _RunSize(_Choice):
    preset: Optional[str] = Field(default=None, max_length=100, description="Scaling-law preset (with d_model).")
    d_model: Optional[int] = Field(default=None, ge=1, le=1_000_000_000, description="Width for the preset.")
    n_devices: int = Field(ge=1, le=10**12, description="Number of accelerators.")
    utilization: float = Field(gt=0, le=1, description="Utilization (MFU) of the run, (0, 1].")
    duration_h: Optional[float] = Field(default=None, gt=0, le=1e9, description="Wall-clock hours.")
    device_hours: Optional[float] = Field(default=None, gt=0, le=1e14, description="Devices x hours.")


CarbonRequest = create_model(
    "CarbonRequest", __base__=_RunSize,
    __doc__="``carbonscaling carbon``: carbon of a run of known size and length (no search).",
    **_fields(_CARBON_SPEC_FIELDS))


class DeadlineFrontRequest(EstimateRequest):  # type: ignore[misc, valid-type]
    """The deadline front of one model on one device type (carbonscaling.pareto.deadline_front):
    ``points`` deadlines from 30 to 365 days (least-carbon layouts) and as many pinned device counts."""

    points: int = Field(default=6, ge=2, le=12, description="Deadlines (and device counts) tried.")


class LossFrontRequest(BaseModel):
    """The loss front of a scaling-law preset across widths (carbonscaling.pareto.loss_front)."""

    model_config = _CONFIG
    preset: str = Field(default="cs-v2", max_length=100, description="Scaling-law preset (GET /api/presets).")
    device: str = Field(default="H100", max_length=100, description="Catalog device name.")
    deadline_days: float = Field(default=90.0, gt=0, le=36_500, description="Deadline of every width (days).")
    region: Optional[str] = Field(default=None, max_length=100, description="Cloud region (GET /api/regions).")
    points: int = Field(default=6, ge=2, le=12, description="Widths across the preset's sweep range.")

    _names = field_validator("device")(classmethod(lambda cls, v: _catalog_name(v)))


class ErrorBody(BaseModel):
    """Bad input: one line, the field it concerns and what is allowed."""

    error: str
    field: str
    message: str


class Infeasible(BaseModel):
    """A valid request with no answer (the CLI's exit status 3)."""

    feasible: Literal[False] = False
    constraint: str
    reason: str
    details: dict = {}
