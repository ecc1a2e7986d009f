"""Published training runs to validate against (``data/published_runs.csv``).

:func:`load_runs` reads the shipped file or a user CSV with the same columns into
immutable :class:`PublishedRun` records; :func:`runs_frame` turns them into a
pandas DataFrame. Only :data:`REQUIRED_COLUMNS` must be present; every other
column is optional and empty cells mean "not reported". A missing required
column, an unparsable or out-of-range number, or a duplicate ``run_id`` raises
:class:`~carbonscaling.errors.InputError` naming the column (and the run).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._data import data_path
from ..errors import InputError, UnknownNameError, from_validation

#: Training FLOPs per (active) parameter per token: 2 forward + 4 backward
#: (Kaplan et al. 2020); the convention both baselines and the papers use.
FLOPS_PER_PARAM_TOKEN = 6

REQUIRED_COLUMNS: tuple[str, ...] = (
    "run_id", "params_total", "params_active", "tokens", "accelerator", "n_devices", "device_hours",
)

#: Quantities a run can report and a predictor can predict, with their units in the name.
REPORTED_QUANTITIES: tuple[str, ...] = (
    "device_hours", "duration_days", "n_devices", "mfu", "tflops_per_device",
    "energy_kwh", "operational_tco2e", "embodied_tco2e",
)

_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}
_INT_FIELDS = {"seq_len", "n_devices", "n_devices_assumed", "tp", "pp", "dp", "ep", "cp", "zero_stage"}
#: Software options (``TrainingOptions`` fields) a run may state; empty = the estimator's default.
OPTION_COLUMNS: tuple[str, ...] = (
    "flash_attention", "sequence_parallel", "overlap_grad_reduce", "overlap_tp_comm", "overlap_ep_comm",
    "overlap_pp_comm")
_BOOL_FIELDS = {"used_for_fitting", *OPTION_COLUMNS}
#: Shared layout columns and the pin each one sets.
_PIN_COLUMNS = {"tp": "tp", "pp": "pp", "dp": "dp", "ep": "ep", "cp": "cp", "zero_stage": "zero"}
_FLOAT_FIELDS = {
    "params_total", "params_active", "tokens", "tokens_assumed", "global_batch_tokens", "mfu",
    "tflops_per_device", "duration_days", "device_hours", "energy_kwh", "pue",
    "carbon_intensity_g_per_kwh", "operational_tco2e", "embodied_tco2e",
}


class PublishedRun(BaseModel):
    """One published run. ``None`` means the source does not report the value."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    run_id: str = Field(min_length=1)
    model: str = ""
    params_total: float = Field(gt=0, le=1e16)
    params_active: float = Field(gt=0, le=1e16)
    tokens: float | None = Field(default=None, gt=0, le=1e18)
    tokens_assumed: float | None = Field(default=None, gt=0, le=1e18,
                                         description="used when `tokens` is empty (e.g. BLOOM)")
    seq_len: int | None = Field(default=None, gt=0, le=10**8)
    global_batch_tokens: float | None = Field(default=None, gt=0, le=1e12)
    accelerator: str = Field(min_length=1)
    n_devices: int | None = Field(default=None, gt=0, le=10**8)
    n_devices_assumed: int | None = Field(default=None, gt=0, le=10**8,
                                          description="device count used when the source publishes none (not scored)")
    tp: int | None = Field(default=None, gt=0, le=10**6)
    pp: int | None = Field(default=None, gt=0, le=10**6)
    dp: int | None = Field(default=None, gt=0, le=10**8)
    ep: int | None = Field(default=None, gt=0, le=10**6)
    cp: int | None = Field(default=None, gt=0, le=10**6)
    zero_stage: int | None = Field(default=None, ge=0, le=3)
    precision: str = ""
    mfu: float | None = Field(default=None, gt=0, le=1)
    tflops_per_device: float | None = Field(default=None, gt=0, le=1e7)
    duration_days: float | None = Field(default=None, gt=0, le=1e5)
    device_hours: float | None = Field(default=None, gt=0, le=1e12)
    energy_kwh: float | None = Field(default=None, gt=0, le=1e12)
    pue: float | None = Field(default=None, ge=1, le=3)  # carbon.run_carbon's range
    carbon_intensity_g_per_kwh: float | None = Field(default=None, ge=0, le=2000)  # as carbon.py
    operational_tco2e: float | None = Field(default=None, ge=0, le=1e9)
    embodied_tco2e: float | None = Field(default=None, ge=0, le=1e9)
    source: str = ""
    notes: str = ""
    model_key: str = ""
    device_key: str = ""
    used_for_fitting: bool | None = None
    flash_attention: bool | None = None
    recompute: Literal["full", "selective", "none"] | None = None
    utilization_kind: Literal["hfu", "mfu"] | None = Field(
        default=None, description="how the reported mfu / tflops_per_device count FLOPs: hfu = incl. recompute")
    mfu_convention: Literal["megatron", "palm", "cs-paper"] | None = Field(
        default=None, description="how the reported mfu / tflops_per_device count model FLOPs "
                                  "(carbonscaling.mfu); empty: palm, the form of every shipped row")
    sequence_parallel: bool | None = None
    overlap_grad_reduce: bool | None = None
    overlap_tp_comm: bool | None = None
    overlap_ep_comm: bool | None = None
    overlap_pp_comm: bool | None = Field(default=None, description="pipeline sends overlapped under interleaving "
                                                                  "(false for Megatron-LM 2021, which predates it)")
    layout_pins: str = Field(default="", description="extra layout facts, e.g. 'tp=8 pp=16 zero=2'")
    scope: str = Field(default="", description="what the reported device-hours cover")
    assumptions: str = Field(default="", description="how our predictor sets the run up, with sources")

    @property
    def pins(self) -> dict[str, int]:
        """The layout this run reports: ``tp/pp/dp/ep/zero_stage`` columns plus ``layout_pins``."""
        out = {pin: getattr(self, col) for col, pin in _PIN_COLUMNS.items() if getattr(self, col) is not None}
        out.update(parse_pins(self.layout_pins, f"runs[{self.run_id}].layout_pins"))
        return out

    @property
    def devices(self) -> int | None:
        """The reported device count, else the documented assumption (``n_devices_assumed``)."""
        return self.n_devices if self.n_devices is not None else self.n_devices_assumed

    @property
    def training_tokens(self) -> float | None:
        """Reported tokens, else the documented assumption (``tokens_assumed``)."""
        return self.tokens if self.tokens is not None else self.tokens_assumed

    @property
    def training_flops(self) -> float | None:
        """``6 * params_active * tokens`` (None when no token count is known)."""
        t = self.training_tokens
        return None if t is None else FLOPS_PER_PARAM_TOKEN * self.params_active * t

    def reported(self) -> dict[str, float]:
        """The reported quantities of :data:`REPORTED_QUANTITIES` (absent ones left out)."""
        out = {q: getattr(self, q) for q in REPORTED_QUANTITIES}
        return {q: float(v) for q, v in out.items() if v is not None}


def pin_keys() -> tuple[str, ...]:
    """Keys allowed in the ``layout_pins`` column: the whole-number fields of
    :class:`~carbonscaling.specs.LayoutPins` (and its ``interleave`` alias), whose ranges apply."""
    from ..specs import LayoutPins

    keys = tuple(k for k, f in LayoutPins.model_fields.items() if f.annotation == (int | None))
    return keys + ("interleave",)


def parse_pins(text: str, where: str = "layout_pins") -> dict[str, int]:
    """``"tp=8 pp=16 zero=2"`` -> ``{"tp": 8, "pp": 16, "zero": 2}`` (keys: :func:`pin_keys`,
    checked against :class:`~carbonscaling.specs.LayoutPins`' ranges)."""
    from ..specs import LayoutPins, spec_error

    keys = pin_keys()
    out: dict[str, int] = {}
    for item in (text or "").replace(",", " ").replace(";", " ").split():
        key, sep, val = item.partition("=")
        if not sep or key not in keys:
            raise InputError(where, f"items must be KEY=N with KEY in {', '.join(keys)}, got {item!r}")
        if not val.isdigit():
            raise InputError(f"{where}.{key}", f"must be a whole number, got {val!r}")
        if key in out:
            raise InputError(f"{where}.{key}", "given twice")
        try:
            LayoutPins.model_validate({key: int(val)})
        except ValidationError as err:
            raise InputError(f"{where}.{key}", spec_error(err).message) from None
        out[key] = int(val)
    return out


def shipped_runs_path() -> Path:
    """Path of the package's own ``published_runs.csv``."""
    return Path(str(data_path("published_runs.csv")))


def _parse_cell(field: str, raw: str, where: str) -> Any:
    text = (raw or "").strip()
    if text == "" or text.lower() in {"nan", "n/a", "na"}:
        return None
    if field in _BOOL_FIELDS:
        low = text.lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise InputError(f"{where}.{field}", f"must be true or false (or empty), got {text!r}")
    if field in _FLOAT_FIELDS or field in _INT_FIELDS:
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            raise InputError(f"{where}.{field}", f"must be a number (or empty), got {text!r}") from None
        if not math.isfinite(value):
            raise InputError(f"{where}.{field}", f"must be finite, got {text!r}")
        if field in _INT_FIELDS:
            if not value.is_integer():
                raise InputError(f"{where}.{field}", f"must be a whole number, got {text!r}")
            return int(value)
        return value
    if field == "recompute":
        return text.lower()
    if field == "utilization_kind":
        return text.lower()
    return text


def _resolve_device_key(key: str, accelerator: str, where: str) -> str:
    from ..hardware import load_system

    name = key or accelerator
    try:
        return load_system(name).device.name
    except UnknownNameError as err:
        raise UnknownNameError(f"{where}.device_key", name, err.choices) from None


def run_from_mapping(row: dict[str, Any], *, where: str = "run") -> PublishedRun:
    """Validate one CSV row (strings) into a :class:`PublishedRun`."""
    rid = (row.get("run_id") or "").strip()
    where = f"{where}[{rid}]" if rid else where
    fields = {k: _parse_cell(k, v if isinstance(v, str) else ("" if v is None else str(v)), where)
              for k, v in row.items() if k is not None and k in PublishedRun.model_fields}
    fields["device_key"] = _resolve_device_key(fields.get("device_key") or "", fields.get("accelerator") or "", where)
    extra = parse_pins(fields.get("layout_pins") or "", f"{where}.layout_pins")
    for col, pin in _PIN_COLUMNS.items():
        if fields.get(col) is not None and pin in extra and extra[pin] != fields[col]:
            raise InputError(f"{where}.layout_pins.{pin}", f"{extra[pin]} contradicts column {col} = {fields[col]}")
    try:
        return PublishedRun(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        raise from_validation(err, where, missing="required value is empty") from None


def parse_runs(text: str, *, origin: str = "runs") -> list[PublishedRun]:
    """Parse CSV text into runs; rows whose first cell starts with ``#`` are comments."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    for col in REQUIRED_COLUMNS:
        if col not in header:
            raise InputError(col, f"required column missing from {origin} (required: {', '.join(REQUIRED_COLUMNS)})")
    reader.fieldnames = header
    runs: list[PublishedRun] = []
    seen: set[str] = set()
    for row in reader:
        first = next(iter(row.values()), "") or ""
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)) or first.startswith("#"):
            continue
        run = run_from_mapping(row, where=origin)
        if run.run_id in seen:
            raise InputError("run_id", f"duplicate run_id {run.run_id!r} in {origin}; run ids must be unique")
        seen.add(run.run_id)
        runs.append(run)
    if not runs:
        raise InputError("runs", f"{origin} has no runs")
    return runs


def load_runs(path: str | Path | None = None) -> list[PublishedRun]:
    """Runs from ``path`` (a CSV with the columns of ``published_runs.csv``), or the shipped file."""
    from .._data import read_user_text

    p = shipped_runs_path() if path is None else Path(path)
    return parse_runs(read_user_text(p, "runs_file"), origin=p.name)


def resolve_runs(runs: str | Path | list[PublishedRun] | None) -> list[PublishedRun]:
    """Accept a path, a list of runs, or None (the shipped file)."""
    if runs is None or isinstance(runs, (str, Path)):
        return load_runs(runs)
    runs = list(runs)
    if not all(isinstance(r, PublishedRun) for r in runs):
        raise InputError("runs", "expected PublishedRun records, a CSV path, or None")
    return runs


def runs_frame(runs: list[PublishedRun] | None = None):
    """A pandas DataFrame with one row per run (all fields plus ``training_flops``)."""
    import pandas as pd

    runs = resolve_runs(runs)
    return pd.DataFrame([{**r.model_dump(), "training_tokens": r.training_tokens,
                          "training_flops": r.training_flops} for r in runs])
