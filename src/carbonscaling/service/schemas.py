"""Request models of the JSON API: ``carbonscaling estimate`` / ``carbon`` options as JSON fields.

Field names are the Python API's keywords (:func:`carbonscaling.estimate`,
:func:`carbonscaling.run_carbon`); the types and ranges here are what the OpenAPI schema
documents and what is rejected before any work is done. The package's own checks still run
behind them (one source of truth for every range), and their errors come back the same way:
HTTP 422, ``{"error": "field: message", "field", "message"}``.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

_Strict = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=100)
MAX_YAML_CHARS = 65_536
BIG = 10**12  # the package's bound on device counts and batch sizes


class ModelChoice(BaseModel):
    """Which model: a catalog name, a preset at a width, or a pasted model YAML (exactly one)."""

    model_config = _Strict
    model: Optional[str] = Field(default=None, description="Catalog model name (GET /api/models).",
                                 examples=["llama3.1-405b"])
    preset: Optional[str] = Field(default=None, description="Scaling-law preset (GET /api/presets); needs d_model.",
                                  examples=["cs-v1"])
    d_model: Optional[int] = Field(default=None, ge=128, le=10_000_000, description="Model width for the preset.")
    model_yaml: Optional[str] = Field(default=None, max_length=MAX_YAML_CHARS,
                                      description="A model file's text: ModelSpec fields (docs/performance.md).")


class DeviceChoice(BaseModel):
    model_config = _Strict
    device: str = Field(default="H100", description="Catalog device (GET /api/devices).")
    years_ahead: float = Field(default=0.0, ge=0, le=50, description="Project the device this many years ahead.")
    cpa_growth: float = Field(default=0.0, ge=-0.5, le=2, description="Yearly growth of carbon per area.")


class CarbonChoice(BaseModel):
    model_config = _Strict
    ci: Optional[Union[float, str]] = Field(
        default=None, description="Grid intensity: g/kWh in [0, 2000], a region name, or an ISO3 country.")
    region: Optional[str] = Field(default=None, description="Cloud region (GET /api/regions); like ci.")
    pue: Optional[float] = Field(default=None, ge=1, le=3, description="Power usage effectiveness.")
    lifetime_years: Optional[float] = Field(default=None, gt=0, le=50, description="Hardware lifetime (years).")
    power_split: Literal["default", "low_static"] = "default"
    embodied_mode: Literal["paper", "vendor"] = "paper"
    infrastructure: bool = True
    include_embodied: bool = True


class EstimateRequest(ModelChoice, DeviceChoice, CarbonChoice):
    """``carbonscaling estimate``: search the device count and layout for a deadline, then carbon."""

    model_config = _Strict
    deadline_days: float = Field(default=90.0, gt=0, le=36_500, description="Longest allowed training (days).")
    objective: Literal["fastest", "carbon"] = "fastest"
    devices: Optional[int] = Field(default=None, ge=1, le=BIG, description="Pin the device count.")
    tp: Optional[int] = Field(default=None, ge=1, le=2**20)
    pp: Optional[int] = Field(default=None, ge=1, le=2**20)
    dp: Optional[int] = Field(default=None, ge=1, le=BIG)
    ep: Optional[int] = Field(default=None, ge=1, le=2**20)
    zero: Optional[int] = Field(default=None, ge=0, le=4)
    microbatch: Optional[int] = Field(default=None, ge=1, le=2**20)
    interleave: Optional[int] = Field(default=None, ge=1, le=2**20)
    recompute: Optional[Literal["none", "selective", "full"]] = None
    global_batch: Optional[int] = Field(default=None, ge=1, le=BIG)
    global_batch_tokens: Optional[float] = Field(default=None, gt=0, le=1e12)
    precision: str = Field(default="bf16", description="Compute precision (GET /api/options).")
    flash_attention: bool = True
    sequence_parallel: bool = True
    overlap_grad_reduce: bool = True
    overlap_tp_comm: bool = False
    overlap_ep_comm: bool = False
    dynamic_eviction: bool = False
    flexible_sharding: bool = False
    qat: bool = False


class CarbonRequest(ModelChoice, DeviceChoice, CarbonChoice):
    """``carbonscaling carbon``: carbon of a run of known size and length (no search)."""

    model_config = _Strict
    n_devices: int = Field(ge=1, le=BIG, description="Number of accelerators.")
    utilization: float = Field(gt=0, le=1, description="Utilization (MFU) of the run.")
    duration_h: Optional[float] = Field(default=None, gt=0, le=1e9, description="Wall-clock hours.")
    device_hours: Optional[float] = Field(default=None, gt=0, le=1e14, description="Devices x hours.")
    year: Optional[int] = Field(default=None, ge=1900, le=2200, description="Year of the region table.")
    alpha: Optional[float] = Field(default=None, ge=0, le=10, description="Dynamic-power scale.")
    vendor_kg_per_device: Optional[float] = Field(default=None, ge=0, le=1e6,
                                                  description="Per-device kgCO2e (embodied_mode vendor).")


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
