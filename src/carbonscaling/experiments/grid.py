"""Grid sweeps: every combination of some axes, chunked, on a pool or a Dask cluster, streamed to disk.

A grid file (YAML) or mapping::

    name: llama-regions
    kind: estimate            # estimate (layout search + carbon) or carbon (known run, no search)
    grid:                     # axes; every combination is one point, the first axis varies slowest
      model: [llama3.1-8b, llama3.1-70b]
      device: [H100, A100-80GB]
      region: [us-east5, europe-west1, asia-south1]
      deadline_days: [30, 90]
    fixed: {precision: bf16}  # the same for every point
    chunk_size: 200           # points per task

Keys of ``grid`` and ``fixed`` are the keywords of :func:`carbonscaling.estimate` or, for
``kind: carbon``, of the service's carbon request (``n_devices``, ``duration_h`` or
``device_hours``, ``utilization``, ``ci``/``region``, ``pue``, ...). A point whose inputs are
bad or that has no answer is a row with ``status`` ``input_error`` / ``infeasible`` and the
reason, not a failed sweep.

Output: a directory holding ``manifest.json`` and one file per finished chunk
(``part-000000.parquet`` or ``.csv``), each written to a temporary name and renamed, so a
chunk is either complete or absent. Running the same sweep into the same directory again
skips the chunks already there (resume); a different sweep into it is refused.
``pandas.read_parquet(DIR)`` or :func:`read_results` reads the whole table.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InfeasibleError, InputError, from_validation
from ..serialize import layout_columns

MAX_POINTS = 10**8
Scalar = Any

ESTIMATE_COLUMNS = {
    "status": "string", "reason": "string", **layout_columns(),  # the layout as serialize.layout_record spells it
    "step_time_s": "float64", "duration_days": "float64", "mfu": "float64",
    "device_hours": "float64", "energy_kwh": "float64", "operational_tco2e": "float64",
    "embodied_tco2e": "float64", "total_tco2e": "float64", "total_low_tco2e": "float64",
    "total_high_tco2e": "float64", "ci_g_per_kwh": "float64", "layouts_evaluated": "int64", "seconds": "float64",
}
CARBON_COLUMNS = {
    "status": "string", "reason": "string", "energy_kwh": "float64", "operational_tco2e": "float64",
    "embodied_tco2e": "float64", "total_tco2e": "float64", "total_low_tco2e": "float64",
    "total_high_tco2e": "float64", "ci_g_per_kwh": "float64", "pue": "float64", "seconds": "float64",
}
CARBON_KEYS = ("model", "preset", "d_model", "device", "years_ahead", "cpa_growth", "n_devices", "duration_h",
               "device_hours", "utilization", "pue", "ci", "region", "year", "lifetime_years", "alpha",
               "power_split", "embodied_mode", "infrastructure", "include_embodied", "vendor_kg_per_device")


class GridSpec(BaseModel):
    """A grid sweep (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(default="grid", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=60)
    kind: Literal["estimate", "carbon"] = "estimate"
    grid: dict[str, list[Scalar]] = Field(min_length=1)
    fixed: dict[str, Scalar] = {}
    chunk_size: int = Field(default=200, ge=1, le=1_000_000)

    @field_validator("grid")
    @classmethod
    def _axes(cls, grid: dict) -> dict:
        for k, vals in grid.items():
            if not vals:
                raise ValueError(f"axis {k!r} has no values")
            for v in vals:
                if not (v is None or isinstance(v, (str, int, float, bool))):
                    raise ValueError(f"axis {k!r}: values must be numbers, text or booleans")
        return grid

    @property
    def axes(self) -> list[str]:
        return list(self.grid)

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    @property
    def n_chunks(self) -> int:
        return -(-self.n_points // self.chunk_size)

    def point(self, i: int) -> dict[str, Any]:
        """The ``i``-th point's keyword arguments (mixed-radix over the axes, last axis fastest)."""
        out = dict(self.fixed)
        for k in reversed(self.axes):
            vals = self.grid[k]
            i, r = divmod(i, len(vals))
            out[k] = vals[r]
        return out

    def fingerprint(self) -> str:
        from .. import __version__

        text = json.dumps({"spec": self.model_dump(), "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def allowed_keys(kind: str) -> set[str]:
    if kind == "carbon":
        return set(CARBON_KEYS)
    from ..specs import ALIASES, flat_fields

    return (set(flat_fields()) | set(ALIASES)) - {"median_carbon"}


def grid_from_mapping(data: Any) -> GridSpec:
    """Validate a grid mapping; errors name the field (``grid.device``, ``fixed.tp``)."""
    if not isinstance(data, dict):
        raise InputError("grid", "must be a mapping with a 'grid' of axes")
    try:
        spec = GridSpec(**data)
    except ValidationError as err:
        raise from_validation(err) from None
    known = allowed_keys(spec.kind)
    for where, keys in (("grid", spec.grid), ("fixed", spec.fixed)):
        for k in keys:
            if k not in known:
                raise InputError(f"{where}.{k}", f"unknown field for kind {spec.kind} (allowed: {', '.join(sorted(known))})")
    both = set(spec.grid) & set(spec.fixed)
    if both:
        raise InputError(f"fixed.{sorted(both)[0]}", "is also an axis of grid")
    if spec.n_points > MAX_POINTS:
        raise InputError("grid", f"has {spec.n_points:,} points; at most {MAX_POINTS:,}")
    return spec


def load_grid(path: str | Path) -> GridSpec:
    from .._data import read_user_yaml

    return grid_from_mapping(read_user_yaml(path, "grid"))


def is_grid_file(path: str | Path) -> bool:
    """A sweep file is a grid (not a scenario) when it has a top-level ``grid`` mapping."""
    from .._data import read_user_yaml

    data = read_user_yaml(path, "scenario")
    return isinstance(data, dict) and isinstance(data.get("grid"), dict)


# ---- evaluating points (in the workers) -------------------------------------------------------------
def _estimate_row(kw: dict) -> dict:
    from ..chain import estimate

    est = estimate(median_carbon=False, **kw)
    d = est.to_dict()
    lay, perf, c = d["layout"], d["performance"], d["carbon"]
    layout = {k: lay[k] for k in layout_columns()}
    return {"status": "ok", "reason": None, **layout,
            "step_time_s": perf["step_time_s"], "duration_days": perf["duration_days"], "mfu": perf["mfu"],
            "device_hours": perf["device_hours"], "energy_kwh": d["energy_kwh"],
            **{k: c[k] for k in ("operational_tco2e", "embodied_tco2e", "total_tco2e", "total_low_tco2e",
                                 "total_high_tco2e")},
            "ci_g_per_kwh": d["breakdown"]["carbon"]["ci_g_per_kwh"], "layouts_evaluated": perf["layouts_evaluated"]}


def _carbon_row(kw: dict) -> dict:
    from ..carbon import run_carbon
    from .accounting import system_spec
    from .accounting import model_spec as preset_model

    kw = dict(kw)
    model, preset, d_model = kw.pop("model", None), kw.pop("preset", None), kw.pop("d_model", None)
    spec = preset_model(preset, int(d_model)) if preset is not None else model
    system = system_spec(kw.pop("device", "H100"), float(kw.pop("years_ahead", 0.0)), float(kw.pop("cpa_growth", 0.0)))
    region = kw.pop("region", None)
    if region is not None:
        kw["ci"] = region
    r = run_carbon(spec, system, **kw)
    return {"status": "ok", "reason": None, "energy_kwh": r.energy_kwh, "operational_tco2e": r.operational_tco2e,
            "embodied_tco2e": r.embodied_tco2e, "total_tco2e": r.total_tco2e, "total_low_tco2e": r.total_low_tco2e,
            "total_high_tco2e": r.total_high_tco2e, "ci_g_per_kwh": r.breakdown["ci_g_per_kwh"],
            "pue": r.breakdown["pue"]}


def evaluate_chunk(spec: GridSpec, index: int) -> list[dict]:
    """Rows of chunk ``index``: each point's axes, then its answer (or why there is none)."""
    fn = _carbon_row if spec.kind == "carbon" else _estimate_row
    rows = []
    start = index * spec.chunk_size
    for i in range(start, min(start + spec.chunk_size, spec.n_points)):
        kw = spec.point(i)
        t0 = time.perf_counter()
        try:
            res = fn(kw)
        except InfeasibleError as err:
            res = {"status": "infeasible", "reason": f"{err.constraint}: {err}"}
        except InputError as err:
            res = {"status": "input_error", "reason": str(err)}
        except MemoryError:
            res = {"status": "infeasible", "reason": "search_memory: the search ran out of memory"}
        rows.append({"point": i, **{k: kw[k] for k in spec.axes}, **res, "seconds": time.perf_counter() - t0})
    return rows


# ---- writing chunks ---------------------------------------------------------------------------------
def _axis_type(values: list) -> str:
    vals = [v for v in values if v is not None]
    if vals and all(isinstance(v, bool) for v in vals):
        return "bool"
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return "int64"
    if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return "float64"
    return "string"


def columns(spec: GridSpec) -> dict[str, str]:
    """Every output column and its type (the same in every chunk, so the parts read as one table)."""
    out = {"point": "int64", **{k: _axis_type(v) for k, v in spec.grid.items()}}
    out.update(CARBON_COLUMNS if spec.kind == "carbon" else ESTIMATE_COLUMNS)
    return out


def _cast(v: Any, typ: str) -> Any:
    if v is None:
        return None
    if typ == "string":
        return str(v)
    if typ == "float64":
        return float(v) if math.isfinite(float(v)) else None
    if typ == "int64":
        return int(v)
    return bool(v)


def write_chunk(path: Path, rows: list[dict], cols: dict[str, str], fmt: str) -> None:
    """Write ``rows`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    table = {c: [_cast(r.get(c), t) for r in rows] for c, t in cols.items()}
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
                                 "bool": pa.bool_()}[t]) for c, t in cols.items()])
        pq.write_table(pa.table(table, schema=schema), tmp)
    else:
        import csv

        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(list(cols))
            for i in range(len(rows)):
                w.writerow(["" if table[c][i] is None else table[c][i] for c in cols])
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def part_path(out: Path, index: int, fmt: str) -> Path:
    return out / f"part-{index:06d}.{fmt}"


def prepare_output(out: Path, spec: GridSpec, fmt: str) -> set[int]:
    """Create ``out`` (or check it holds this very sweep); the chunk indices already written."""
    manifest = {"name": spec.name, "fingerprint": spec.fingerprint(), "format": fmt, "n_points": spec.n_points,
                "chunk_size": spec.chunk_size, "n_chunks": spec.n_chunks, "columns": columns(spec),
                "spec": spec.model_dump()}
    mpath = out / "manifest.json"
    if out.exists() and not out.is_dir():
        raise InputError("out", f"{str(out)!r} is a file, not a directory")
    if mpath.exists():
        try:
            old = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("fingerprint") != manifest["fingerprint"] or old.get("format") != fmt:
            raise InputError("out", f"{str(out)!r} holds a different sweep (or format); choose another --out "
                                    "or delete it")
    elif out.exists() and any(out.iterdir()):
        raise InputError("out", f"{str(out)!r} is not empty and holds no sweep manifest")
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob(".part-*.tmp"):  # a chunk interrupted while being written
        stray.unlink()
    if not mpath.exists():
        tmp = out / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, mpath)
    return {i for i in range(spec.n_chunks) if part_path(out, i, fmt).exists()}


@dataclass
class GridResult:
    out: Path
    n_points: int
    n_chunks: int
    chunks_run: int
    chunks_skipped: int
    seconds: float
    executor: str

    @property
    def points_per_s(self) -> float:
        run_points = self.n_points * self.chunks_run / max(1, self.n_chunks)
        return run_points / self.seconds if self.seconds > 0 else float("nan")


def run_grid(spec: GridSpec | dict | str | Path, out: str | Path, *, scheduler: str | None = None,
             jobs: int | None = None, executor: Any = None, fmt: Optional[str] = None,
             chunk_size: int | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> GridResult:
    """Run a grid sweep into ``out`` (resuming), on ``executor`` or one opened from ``scheduler``.

    ``fmt`` is ``parquet`` (default when pyarrow is installed) or ``csv``; ``progress(phase,
    done, total)`` is called after each chunk is written.
    """
    from .executors import as_finished, check_scheduler, describe, open_executor, submit

    if executor is None:
        check_scheduler(scheduler)  # before anything is written

    if not isinstance(spec, GridSpec):
        spec = load_grid(spec) if isinstance(spec, (str, Path)) else grid_from_mapping(spec)
    if chunk_size is not None:
        spec = grid_from_mapping({**spec.model_dump(), "chunk_size": chunk_size})
    fmt = fmt or _default_format()
    if fmt not in ("parquet", "csv"):
        raise InputError("format", f"must be parquet or csv, got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("format", "parquet needs pyarrow (pip install 'carbonscaling[parquet]'), or use csv") from None
    out = Path(out)
    done = prepare_output(out, spec, fmt)
    todo = [i for i in range(spec.n_chunks) if i not in done]
    cols = columns(spec)
    t0 = time.perf_counter()
    if executor is None and todo:
        with open_executor(scheduler, jobs) as ex:
            return run_grid(spec, out, executor=ex, fmt=fmt, progress=progress)
    count = len(done)
    if progress:
        progress("chunks", count, spec.n_chunks)
    futures = {}
    try:
        futures = {id(f): (i, f) for i, f in ((i, submit(executor, evaluate_chunk, spec, i)) for i in todo)}
        for fut in as_finished(executor, [f for _, f in futures.values()]):
            i, _ = futures[id(fut)]
            write_chunk(part_path(out, i, fmt), fut.result(), cols, fmt)
            count += 1
            if progress:
                progress("chunks", count, spec.n_chunks)
    except BaseException:
        for _, f in futures.values():
            f.cancel()
        raise
    return GridResult(out=out, n_points=spec.n_points, n_chunks=spec.n_chunks, chunks_run=len(todo),
                      chunks_skipped=len(done), seconds=time.perf_counter() - t0,
                      executor=describe(executor) if executor is not None else "none")


def _default_format() -> str:
    try:
        import pyarrow  # noqa: F401

        return "parquet"
    except ImportError:
        return "csv"


def read_results(out: str | Path):
    """The finished chunks of a sweep directory as one pandas DataFrame, in point order."""
    import pandas as pd

    out = Path(out)
    fmt = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["format"]
    parts = sorted(out.glob(f"part-*.{fmt}"))
    if not parts:
        return pd.DataFrame()
    frames = [pd.read_parquet(p) if fmt == "parquet" else pd.read_csv(p) for p in parts]
    return pd.concat(frames, ignore_index=True).sort_values("point", ignore_index=True)
