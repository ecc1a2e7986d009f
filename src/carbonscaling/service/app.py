"""The FastAPI application of ``carbonscaling serve``.

Routes (all JSON except the page)::

    GET  /                 the calculator page (static/index.html)
    GET  /api/health       {"status": "ok", "version"}
    GET  /api/models | /api/devices | /api/regions[?year=] | /api/presets | /api/options
    POST /api/estimate     EstimateRequest -> the CLI's ``estimate --json`` + "feasible": true,
                           or {"feasible": false, "constraint", "reason", "details"}
    POST /api/carbon       CarbonRequest -> the CLI's ``carbon --json``
    POST /api/front/deadline  Pareto front duration x carbon x devices (carbonscaling.pareto)
    POST /api/front/loss      Pareto front loss x carbon across a preset's widths

Searches are CPU-bound and run in the server's thread pool, at most ``max_concurrent``
at once (each may hold a few hundred MB); identical requests are answered from a small
cache (a shared link re-opened costs nothing).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from importlib import resources
from typing import Any, Callable, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import CarbonScalingError, InfeasibleError, InputError
from .schemas import (MAX_YAML_CHARS, CarbonRequest, DeadlineFrontRequest, ErrorBody, EstimateRequest, Infeasible,
                      LossFrontRequest)

ERRORS = {422: {"model": ErrorBody, "description": "Bad input: one line naming the field."}}


# ---- helpers ---------------------------------------------------------------------------------
def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return finite(obj.item())
    return str(obj)


def error_response(field: str, message: str, status: int = 422) -> JSONResponse:
    line = " ".join(f"{field}: {message}".split())
    return JSONResponse({"error": line, "field": field, "message": " ".join(str(message).split())}, status)


def _loc_field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    # Union members add their type name to the path (ci.float / ci.str): drop it.
    parts = [p for p in parts if p not in ("float", "str", "int", "function-after[...]")]
    return ".".join(parts) or "body"


def validation_response(err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0]
    kind = first.get("type", "")
    field = _loc_field(tuple(first.get("loc", ())))
    if kind == "missing":
        msg = "required field is missing"
    elif kind == "extra_forbidden":
        msg = "unknown field"
    elif kind in ("json_invalid", "model_attributes_type", "dict_type"):
        field, msg = "body", "must be a JSON object of the documented fields"
    else:
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        inp = first.get("input")
        if not isinstance(inp, (dict, list)):
            shown = repr(inp)
            msg = f"{msg} (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    return error_response(field, msg)


def model_of(req):
    """The ``model`` argument of the Python API: a catalog name, or the pasted YAML's ModelSpec."""
    if req.model_yaml is None:
        return req.model
    if req.model is not None or getattr(req, "preset", None) is not None or getattr(req, "d_model", None) is not None:
        raise InputError("model_yaml", "give one of model, preset + d_model, or model_yaml")
    import yaml

    from .._data import parse_yaml
    from ..scaling import model_from_mapping

    try:
        data = parse_yaml(req.model_yaml)
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise InputError("model_yaml", "is not valid YAML" + (f" (line {line + 1})" if line is not None else "")) from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    try:
        return model_from_mapping(data, origin="model_yaml")
    except InputError as err:
        field = err.field if err.field.startswith("model_yaml") else f"model_yaml.{err.field}"
        raise InputError(field, err.message) from None


class _Cache:
    """A small thread-safe LRU of answers keyed by the canonical request."""

    def __init__(self, size: int = 128) -> None:
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get_or_compute(self, key: str, fn: Callable[[], dict]) -> dict:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = fn()
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


def answer(fn: Callable[[], dict]) -> Any:
    """Run ``fn``; package errors become 422 (bad input) or a 200 infeasible answer."""
    try:
        return finite(fn())
    except InputError as err:
        return error_response(err.field or "body", err.message)
    except InfeasibleError as err:
        return finite(Infeasible(constraint=err.constraint or "unknown", reason=str(err),
                                 details=dict(err.details)).model_dump())
    except CarbonScalingError as err:
        return error_response("body", str(err))


# ---- computations ------------------------------------------------------------------------------
def run_estimate(req: EstimateRequest) -> dict:
    from ..chain import estimate

    kw = req.model_dump(exclude={"model", "model_yaml"}, exclude_unset=True)  # unset: the spec's default
    kw["device"] = req.device
    try:
        est = estimate(model=model_of(req), **kw)
    except InputError as err:  # the grid look-up names "region" for what came in as ci
        if err.field in ("region", "country") and req.region is None:
            raise InputError("ci", err.message) from None
        raise
    return {"feasible": True, **est.to_dict()}


def run_carbon_request(req: CarbonRequest) -> dict:
    from ..carbon import run_carbon
    from ..chain import build_model, build_system
    from ..hardware import describe

    model = model_of(req)
    spec = None
    if model is not None or req.preset is not None or req.d_model is not None:
        spec = build_model(model, preset=req.preset, d_model=req.d_model)
    system = build_system(req.device, years_ahead=req.years_ahead, cpa_growth=req.cpa_growth)
    if req.ci is not None and req.region is not None:
        raise InputError("ci", "give at most one of ci and region")
    res = run_carbon(spec, system, n_devices=req.n_devices, duration_h=req.duration_h,
                     device_hours=req.device_hours, utilization=req.utilization, pue=req.pue,
                     ci=req.region if req.region is not None else req.ci, year=req.year,
                     lifetime_years=req.lifetime_years, alpha=req.alpha, power_split=req.power_split,
                     embodied_mode=req.embodied_mode, infrastructure=req.infrastructure,
                     include_embodied=req.include_embodied, vendor_kg_per_device=req.vendor_kg_per_device)
    return {"model": spec.summary() if spec else None, "device": describe(system), **res.to_dict()}


def run_deadline_front(req) -> dict:
    from ..pareto import deadline_front

    kw = req.model_dump(exclude={"model", "model_yaml", "points", "device"}, exclude_unset=True)
    model = model_of(req)
    if model is None and req.preset is None:
        raise InputError("model", "give a model, preset + d_model, or model_yaml")
    if req.preset is not None:
        kw.update(preset=req.preset, d_model=req.d_model)
    return deadline_front(model, req.device, points=req.points, **kw)


def run_loss_front(req: LossFrontRequest) -> dict:
    from ..pareto import loss_front

    kw = {"deadline_days": req.deadline_days}
    if req.region is not None:
        kw["region"] = req.region
    return loss_front(req.preset, req.device, points=req.points, **kw)


def catalog_models() -> list[dict]:
    from ..scaling import catalog_entry, model_names, named_model

    return [{**named_model(n).summary(), "source": catalog_entry(n).get("source", "")} for n in model_names()]


def catalog_devices() -> list[dict]:
    from ..hardware import describe, device_names, load_system

    return [describe(load_system(n)) for n in device_names()]


def options() -> dict:
    """Choices the page offers (read from the package, so they follow it)."""
    from typing import get_args

    from ..scaling import preset_names
    from ..specs import Recipe

    precisions = list(get_args(Recipe.model_fields["precision"].annotation)) or ["bf16"]
    return {"precisions": precisions, "presets": preset_names(), "recompute": ["none", "selective", "full"],
            "objectives": ["fastest", "carbon"], "power_splits": ["default", "low_static"],
            "embodied_modes": ["paper", "vendor"], "max_model_yaml_chars": MAX_YAML_CHARS}


# ---- the app -------------------------------------------------------------------------------------
def create_app(max_concurrent: int = 2) -> FastAPI:
    """The service: error handlers, the page, the catalogs, then the computing routes (in this
    order, which is the order of the OpenAPI schema's paths)."""
    app = FastAPI(title="carbonscaling", version=__version__,
                  description="Carbon of LLM training runs: layout search, step time, energy, operational "
                              "and embodied carbon. Bad input: HTTP 422 with one line naming the field; "
                              "a request with no answer: HTTP 200 with feasible = false and the binding "
                              "constraint.")
    add_error_handlers(app)
    add_page_routes(app)
    add_catalog_routes(app)
    add_compute_routes(app, threading.BoundedSemaphore(max(1, max_concurrent)), _Cache())
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error is one line naming the field: 422 for bad input (request validation, an
    unparsable body, a package error), the status itself for a wrong path or method."""

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError):  # noqa: ARG001
        return validation_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):  # noqa: ARG001
        if err.status_code == 400:  # an unparsable body (not UTF-8, not JSON) is bad input like any other
            return error_response("body", "must be a JSON object of the documented fields")
        return error_response("path" if err.status_code in (404, 405) else "body", str(err.detail), err.status_code)

    @app.exception_handler(CarbonScalingError)
    async def _package_error(request: Request, err: CarbonScalingError):  # noqa: ARG001
        return error_response(getattr(err, "field", "body") or "body", getattr(err, "message", str(err)))


def add_page_routes(app: FastAPI) -> None:
    """The calculator page, its static files and the health check."""
    static = resources.files("carbonscaling.service") / "static"

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__}


def add_catalog_routes(app: FastAPI) -> None:
    """Models, devices, regions, presets and option lists (computed once per app, regions per year)."""
    catalogs: dict[str, Any] = {}

    def cached_catalog(name: str, fn: Callable[[], Any]) -> Any:
        if name not in catalogs:
            catalogs[name] = finite(fn())
        return catalogs[name]

    @app.get("/api/models", responses=ERRORS)
    def models() -> list[dict]:
        return cached_catalog("models", catalog_models)

    @app.get("/api/devices", responses=ERRORS)
    def devices() -> list[dict]:
        return cached_catalog("devices", catalog_devices)

    @app.get("/api/regions", responses=ERRORS)
    def regions(year: Optional[int] = Query(default=None, ge=1900, le=2200, description="Year (default: latest).")):
        from ..carbon import region_table

        return answer(lambda: region_table(year))

    @app.get("/api/presets")
    def presets() -> list[str]:
        return options()["presets"]

    @app.get("/api/options")
    def option_lists() -> dict:
        return cached_catalog("options", options)


def add_compute_routes(app: FastAPI, gate: threading.BoundedSemaphore, cache: _Cache) -> None:
    """Estimate, the two Pareto fronts and carbon. Searches hold ``gate`` (at most its count run at
    once) and are answered from ``cache`` when the same request comes again."""

    @app.post("/api/estimate", responses=ERRORS)
    def estimate_route(req: EstimateRequest) -> Any:
        """Search the minimal device count and fastest (or least-carbon) layout, then its carbon."""
        key = json.dumps(req.model_dump(), sort_keys=True)

        def compute() -> dict:
            with gate:
                try:
                    return run_estimate(req)
                except InfeasibleError as err:  # an answer too: cached like one
                    return Infeasible(constraint=err.constraint or "unknown", reason=str(err),
                                      details=finite(dict(err.details))).model_dump()

        return answer(lambda: cache.get_or_compute(key, compute))

    @app.post("/api/front/deadline", responses=ERRORS)
    def deadline_front_route(req: DeadlineFrontRequest) -> Any:
        """Pareto front over (duration, total carbon, devices): 2 x points estimates (slow: seconds)."""
        key = "deadline-front " + json.dumps(req.model_dump(), sort_keys=True)

        def compute() -> dict:
            with gate:
                return run_deadline_front(req)

        return answer(lambda: cache.get_or_compute(key, compute))

    @app.post("/api/front/loss", responses=ERRORS)
    def loss_front_route(req: LossFrontRequest) -> Any:
        """Pareto front over (scaling-law loss, total carbon) across widths of a preset."""
        key = "loss-front " + json.dumps(req.model_dump(), sort_keys=True)

        def compute() -> dict:
            with gate:
                return run_loss_front(req)

        return answer(lambda: cache.get_or_compute(key, compute))

    @app.post("/api/carbon", responses=ERRORS)
    def carbon_route(req: CarbonRequest) -> Any:
        """Operational and embodied carbon of a run of known size and length."""
        return answer(lambda: run_carbon_request(req))
