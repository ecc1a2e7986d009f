"""Monte-Carlo uncertainty of a run's energy and carbon, and which input moves it most.

The inputs and their distributions are declared in ``data/uncertainty.yaml`` (one entry
each, with sources); :func:`propagate` samples them with a seeded NumPy generator and
pushes every sample through :func:`response`, a vectorised restatement of the carbon
model (carbon.py) around one point estimate's breakdown:

    T      = step_time x goodput_point / goodput                   (wall-clock factor)
    E_dev  = DH T TDP (1 - f) + DH (g0 / g) alpha TDP f U           (device kWh, IT; U T / step = U)
    E_it   = it_power x (E_dev + E_other T)                         (E_other: node-other + network)
    CO_op  = E_it PUE CI,   CO_emb = T L0 / L (dev_kg / dev_kg0 A + host H) (1 + s) / (1 + s0)

Dynamic device energy does not grow when steps are slower (the same work at lower
utilization), while static, host and embodied terms grow with wall-clock time: this is why
the step-time error moves the total less than its own spread. :func:`sensitivity` is a
one-at-a-time swing (each input at its 5th and 95th percentile, the others at the point)
for the tornado chart. An empirical input may draw from the estimate's own rows of its table
(``select_by: [device, model_kind]``: the step-time error of the estimate's device and model
kind when that cell has enough rows, else of its device, else every row;
``Uncertainty.inputs[name]["pool"]`` says which). The point estimate itself is
unchanged by all of this. One input's declaration, empirical tables, row selection and draws
are :mod:`carbonscaling.uncertainty_inputs`'s (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._data import load_yaml, read_user_yaml
from .errors import InputError
from .uncertainty_inputs import (DISTRIBUTIONS, RESIDUAL_TABLES, InputSpec, _bounds, _check_spec,  # noqa: F401
                                 _table, cell_residuals, cells, draw, model_kind, own_pool,  # re-exported
                                 pool_line, power_residuals, quantile, region_year_ratios, residual_rows,
                                 residuals, selection_columns, select_rows, step_time_residuals, widen)

QUANTITIES = ("energy_kwh", "operational_tco2e", "embodied_tco2e", "total_tco2e")
PERCENTILES = (5, 50, 95)
DEFAULT_SAMPLES = 4096
MAX_SAMPLES = 1_000_000


# ---- input declarations (one input's draws: uncertainty_inputs.py) ----------------------
def load_inputs(path: str | Path | None = None) -> dict[str, InputSpec]:
    """The declared inputs: the shipped ``uncertainty.yaml``, or a user's file of the same shape."""
    raw = load_yaml("uncertainty.yaml") if path is None else read_user_yaml(path, "uncertainty_file")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("inputs"), Mapping):
        raise InputError("uncertainty_file", "must have a mapping 'inputs: {name: {...}}'")
    specs = {name: _check_spec(name, v) for name, v in raw["inputs"].items()}
    for name, spec in specs.items():
        if name in RESPONSE_INPUTS:
            continue
        terms = spec.params.get("scales")
        if spec.kind != "factor" or not isinstance(terms, list) or not terms:
            raise InputError(f"uncertainty.{name}",
                             f"unknown input; known: {', '.join(RESPONSE_INPUTS)}, or a factor with "
                             "'scales: [energy terms]' (e.g. host, network, device_static)")
    return specs


# ---- the response surface ------------------------------------------------------------------
RESPONSE_INPUTS = ("grid_intensity", "pue", "dynamic_fraction", "it_power", "device_embodied_kg", "host_embodied",
                   "infrastructure_fraction", "lifetime_years", "goodput", "step_time")


def base_point(carbon: Any, *, specs: Mapping[str, InputSpec] | None = None) -> dict[str, float]:
    """The point estimate's parts the response needs, from a ``CarbonResult``.

    IT energy is split into work-proportional device energy (``dyn``: the dynamic share, which
    does not grow when steps are slower), the rest of the device energy (``static``) and
    everything else (``other``: host, network). A power model without a static/dynamic split
    has ``dyn = 0`` (all energy grows with wall-clock time) and ``dynamic_fraction`` is not sampled.
    """
    b = carbon.breakdown
    gp = (specs or {}).get("goodput")
    modelled_goodput = b.get("goodput_goodput", b.get("goodput"))
    goodput = float(modelled_goodput) if modelled_goodput is not None else float(
        (gp.params if gp else {}).get("point", 1.0))
    static = b.get("device_static_energy_kwh")
    dyn = b.get("device_dynamic_energy_kwh")
    tdp = float(b.get("tdp_w") or 0.0)
    split = static is not None and dyn is not None and b.get("p_dynamic_w") is not None and tdp > 0
    if not split:
        static, dyn = float(carbon.device_energy_kwh), 0.0
    host = sum(float(b.get(f"embodied_{k}_tco2e", 0.0)) for k in ("cpu", "dram", "ssd"))
    terms = {k[: -len("_energy_kwh")]: float(v) for k, v in b.items()
             if k.endswith("_energy_kwh") and f"{k[: -len('_energy_kwh')]}_tco2e" in b}
    return {
        "terms_kwh": terms,
        "static_kwh": float(static), "dyn_kwh": float(dyn),
        "other_kwh": float(carbon.it_energy_kwh) - float(static) - float(dyn),
        "dynamic_fraction": float(b["p_dynamic_w"]) / tdp if split else 0.0, "split": split,
        "pue": float(b["pue"]), "ci": float(b["ci_g_per_kwh"]),
        "accel_tco2e": float(b.get("embodied_accelerator_tco2e", 0.0)), "host_tco2e": host,
        "device_embodied_kg": float(b.get("device_embodied_kg", 0.0)),
        "infrastructure_fraction": float(b.get("infrastructure_fraction", 0.0)),
        "lifetime_years": float(b["lifetime_years"]), "goodput": goodput,
        "goodput_modelled": modelled_goodput is not None,
        "power_model": str(b.get("power_model", "paper" if split else "measured")),
        "embodied_included": bool(b.get("include_embodied", True)) and float(carbon.embodied_tco2e) > 0,
        "labels": {k: v for k, v in b.items() if isinstance(v, str)},  # device, ...: what select_by reads
    }


def point_values(base: Mapping[str, float]) -> dict[str, float]:
    """Each input's value in the point estimate (factors are 1)."""
    return {"grid_intensity": 1.0, "pue": base["pue"], "dynamic_fraction": base["dynamic_fraction"], "it_power": 1.0,
            "device_embodied_kg": base["device_embodied_kg"], "host_embodied": 1.0,
            "infrastructure_fraction": base["infrastructure_fraction"], "lifetime_years": base["lifetime_years"],
            "goodput": base["goodput"], "step_time": 1.0, **{k: 1.0 for k in base.get("scales", {})}}


def response(base: Mapping[str, float], x: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Energy (kWh, facility) and carbon (tCO2e) for input values ``x`` (arrays or scalars)."""
    p = point_values(base)
    g = {k: np.asarray(x.get(k, p[k]), dtype=float) for k in RESPONSE_INPUTS}
    extra = _term_factors(base, {k: v for k, v in x.items() if k not in RESPONSE_INPUTS})
    lost = base["goodput"] / g["goodput"]            # wall clock per productive hour, vs the point
    t = g["step_time"] * lost
    f0 = base["dynamic_fraction"]
    if base["split"] and 0.0 < f0 < 1.0:
        static = base["static_kwh"] * (1.0 - g["dynamic_fraction"]) / (1.0 - f0)
        dyn = base["dyn_kwh"] * g["dynamic_fraction"] / f0
    else:
        static, dyn = base["static_kwh"], base["dyn_kwh"]
    it_kwh = g["it_power"] * (static * t + dyn * lost + base["other_kwh"] * t + extra * t)
    energy = it_kwh * g["pue"]
    operational = energy * base["ci"] * g["grid_intensity"] / 1e6
    if base["embodied_included"]:
        kg0 = base["device_embodied_kg"] or 1.0
        s0 = base["infrastructure_fraction"]
        manuf = base["accel_tco2e"] * g["device_embodied_kg"] / kg0 + base["host_tco2e"] * g["host_embodied"]
        share = (1.0 + g["infrastructure_fraction"]) if s0 > 0 else 1.0  # manuf excludes the share
        embodied = t * base["lifetime_years"] / g["lifetime_years"] * manuf * share
    else:
        embodied = np.zeros_like(operational)
    return {"energy_kwh": energy, "operational_tco2e": operational, "embodied_tco2e": embodied,
            "total_tco2e": operational + embodied}


def _term_factors(base: Mapping[str, Any], x: Mapping[str, Any]) -> Any:
    """Extra IT kWh from generic inputs (``scales: [terms]``): sum over terms of kWh x (factor - 1)."""
    extra = 0.0
    for name, value in x.items():
        terms = base.get("scales", {}).get(name, [])
        kwh = sum(base["terms_kwh"].get(term, 0.0) for term in terms)
        extra = extra + kwh * (np.asarray(value, dtype=float) - 1.0)
    return extra


# ---- results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Uncertainty:
    """Percentile bands of one estimate and the one-at-a-time sensitivity ranking."""

    point: dict[str, float]
    bands: dict[str, dict[str, float]]            # quantity -> {"p5", "p50", "p95"}
    sensitivity: list[dict[str, Any]]             # sorted by swing, largest first
    samples: int
    seed: int
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "bands": self.bands, "sensitivity": self.sensitivity, "samples": self.samples,
                "seed": self.seed, "inputs": self.inputs}

    def top(self, k: int = 3) -> list[str]:
        return [s["input"] for s in self.sensitivity[:k]]

    def pool_lines(self) -> list[str]:
        """One line per input drawn from selected rows of its table: which rows and how many."""
        return pool_lines(self.inputs)


def pool_lines(inputs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``"step_time drawn from: 37 H100-SXM rows of ..."`` for each input of ``inputs`` (an
    :attr:`Uncertainty.inputs` or its JSON) that carries a ``pool``."""
    return [f"{name} drawn from: {m['pool']['line']}" for name, m in inputs.items() if m.get("pool")]


def _check_run(samples: Any, seed: Any) -> tuple[int, int]:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 16 <= samples <= MAX_SAMPLES:
        raise InputError("samples", f"must be an integer in [16, {MAX_SAMPLES:,}], got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise InputError("seed", f"must be a non-negative integer, got {seed!r}")
    return int(samples), int(seed)


def sensitivity(base: Mapping[str, float], specs: Mapping[str, InputSpec]) -> list[dict[str, Any]]:
    """Total tCO2e with each input alone at its 5th and 95th percentile; largest swing first."""
    pts = point_values(base)
    center = float(response(base, {})["total_tco2e"])
    rows = []
    for name, spec in specs.items():
        lo_x, hi_x = quantile(spec, pts[name], 0.05), quantile(spec, pts[name], 0.95)
        lo = float(response(base, {name: lo_x})["total_tco2e"])
        hi = float(response(base, {name: hi_x})["total_tco2e"])
        rows.append({"input": name, "low_value": lo_x, "high_value": hi_x, "total_at_low_tco2e": lo,
                     "total_at_high_tco2e": hi, "swing_tco2e": abs(hi - lo),
                     "swing_fraction": abs(hi - lo) / center if center else 0.0})
    return sorted(rows, key=lambda r: -r["swing_tco2e"])


def _for_model(spec: InputSpec, base: Mapping[str, Any]) -> InputSpec:
    """The spec as it applies to this point estimate's power model and goodput.

    ``other_power_models: {...}`` replaces the distribution when the breakdown's power model
    is not ``measured`` (its residuals were measured for that model only); a goodput the
    energy model computes becomes the mode, with ``modelled_spread`` either side (capped at 1).
    """
    p = dict(spec.params)
    dist = spec.distribution
    other = p.pop("other_power_models", None)
    if other and base.get("power_model", "measured") != "measured":
        dist = other.get("distribution", dist)
        p.update({k: v for k, v in other.items() if k != "distribution"})
        p.pop("table", None)
    spread = p.pop("modelled_spread", None)
    if spec.name == "goodput" and base["goodput_modelled"] and spread is not None:
        g = base["goodput"]
        p.update(low=max(1e-3, g * (1.0 - float(spread))), high=min(1.0, g * (1.0 + float(spread))), mode="point")
    return InputSpec(spec.name, spec.kind, dist, p, spec.source, spec.verified)


def propagate(carbon: Any, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
              inputs: Mapping[str, InputSpec] | None = None, model: Any = None) -> Uncertainty:
    """p5/p50/p95 bands and the sensitivity ranking of a :class:`~carbonscaling.carbon.CarbonResult`.

    ``inputs`` defaults to :func:`load_inputs`; a subset propagates only those inputs.
    ``model`` (the estimate's :class:`~carbonscaling.model_spec.ModelSpec`) adds its
    ``model_kind`` (dense / moe / hybrid) to what ``select_by`` reads; without it a selection
    by model kind falls back to the coarser cell. Reproducible: the same ``seed`` and inputs
    give the same bands.
    """
    n, s = _check_run(samples, seed)
    specs = dict(load_inputs() if inputs is None else inputs)
    base = base_point(carbon, specs=specs)
    if model is not None:
        base["labels"]["model_kind"] = model_kind(model)
    base["scales"] = {k: list(v.params["scales"]) for k, v in specs.items() if k not in RESPONSE_INPUTS}
    for name, terms in base["scales"].items():
        if not any(t in base["terms_kwh"] for t in terms):
            specs.pop(name)  # this power model has none of the terms it scales
    if not base["embodied_included"]:
        specs = {k: v for k, v in specs.items()
                 if k not in ("device_embodied_kg", "host_embodied", "infrastructure_fraction", "lifetime_years")}
    if not base["split"]:
        specs.pop("dynamic_fraction", None)
    for name, spec in list(specs.items()):
        specs[name] = select_rows(_for_model(spec, base), base["labels"])
    rng = np.random.default_rng(s)
    pts = point_values(base)
    x = {name: draw(spec, pts[name], n, rng) for name, spec in specs.items()}
    out = response(base, x)
    point = {k: float(v) for k, v in response(base, {}).items()}
    bands = {q: dict(zip(("p5", "p50", "p95"), (float(v) for v in np.percentile(out[q], PERCENTILES))))
             for q in QUANTITIES}
    meta = {k: {"kind": v.kind, "distribution": v.distribution, "point": pts[k], "source": v.source,
                "verified": v.verified, **({"pool": v.params["pool"]} if "pool" in v.params else {})}
            for k, v in specs.items()}
    return Uncertainty(point=point, bands=bands, sensitivity=sensitivity(base, specs), samples=n, seed=s,
                       inputs=meta)


def tornado_figure(unc: Uncertainty, path: str | Path, title: str = "") -> Path:
    """A tornado chart of :attr:`Uncertainty.sensitivity` (PNG; matplotlib imported here)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = unc.sensitivity[::-1]
    center = unc.point["total_tco2e"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        lo, hi = sorted((r["total_at_low_tco2e"], r["total_at_high_tco2e"]))
        ax.barh(i, hi - lo, left=lo, color="#4878a8")
    ax.axvline(center, color="k", lw=1)
    xs = [center] + [r[k] for r in rows for k in ("total_at_low_tco2e", "total_at_high_tco2e")]
    pad = 0.05 * (max(xs) - min(xs) or abs(center) or 1.0)
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_yticks(range(len(rows)), [r["input"] for r in rows])
    ax.set_xlabel("total tCO2e with one input at its 5th / 95th percentile")
    b = unc.bands["total_tco2e"]
    ax.set_title(title or f"point {center:,.0f} t; p5-p95 {b['p5']:,.0f}-{b['p95']:,.0f} t", fontsize=9)
    fig.subplots_adjust(left=0.3, right=0.97, bottom=0.18)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
