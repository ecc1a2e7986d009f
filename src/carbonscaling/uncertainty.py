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
for the tornado chart. The point estimate itself is unchanged by all of this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._data import load_csv, load_yaml, read_user_yaml
from .errors import InputError

QUANTITIES = ("energy_kwh", "operational_tco2e", "embodied_tco2e", "total_tco2e")
PERCENTILES = (5, 50, 95)
DISTRIBUTIONS = ("triangular", "uniform", "loguniform", "empirical")
DEFAULT_SAMPLES = 4096
MAX_SAMPLES = 1_000_000


# ---- input declarations --------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """One uncertain input as declared in ``uncertainty.yaml``."""

    name: str
    kind: str                      # "factor" or "value"
    distribution: str
    params: Mapping[str, Any]
    source: str = ""
    verified: bool = False


def _check_spec(name: str, raw: Any) -> InputSpec:
    if not isinstance(raw, Mapping):
        raise InputError(f"uncertainty.{name}", "must be a mapping of kind/distribution/parameters")
    kind, dist = raw.get("kind"), raw.get("distribution")
    if kind not in ("factor", "value"):
        raise InputError(f"uncertainty.{name}.kind", f"must be 'factor' or 'value', got {kind!r}")
    if dist not in DISTRIBUTIONS:
        raise InputError(f"uncertainty.{name}.distribution", f"must be one of {', '.join(DISTRIBUTIONS)}, got {dist!r}")
    params = {k: v for k, v in raw.items() if k not in ("kind", "distribution", "source", "verified")}
    return InputSpec(name, kind, dist, params, str(raw.get("source", "")), bool(raw.get("verified", False)))


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


def widen(specs: Mapping[str, InputSpec], name: str, scale: float) -> dict[str, InputSpec]:
    """A copy of ``specs`` with input ``name``'s range stretched by ``scale`` about its mode."""
    if name not in specs:
        raise InputError("input", f"unknown input {name!r}; known: {', '.join(specs)}")
    s = specs[name]
    p = dict(s.params)
    if s.distribution == "empirical":
        p["scale"] = float(p.get("scale", 1.0)) * scale
    else:
        for lo, hi in (("low", "high"), ("low_offset", "high_offset")):
            if lo in p and hi in p:
                mid = 0.0 if lo == "low_offset" else float(p.get("mode", 1.0) if isinstance(p.get("mode"), (int, float))
                                                            else (p[lo] + p[hi]) / 2)
                if s.distribution == "loguniform":
                    g = math.sqrt(p[lo] * p[hi])
                    p[lo], p[hi] = g * (p[lo] / g) ** scale, g * (p[hi] / g) ** scale
                else:
                    p[lo], p[hi] = mid + (p[lo] - mid) * scale, mid + (p[hi] - mid) * scale
    return {**specs, name: InputSpec(s.name, s.kind, s.distribution, p, s.source, s.verified)}


# ---- empirical tables -------------------------------------------------------------------
@lru_cache(maxsize=None)
def region_year_ratios(min_ci: float = 50.0) -> np.ndarray:
    """ci(y+1) / ci(y) for every region and consecutive pair of years in ``regions.csv``."""
    by_region: dict[str, dict[int, float]] = {}
    for r in load_csv("regions.csv"):
        by_region.setdefault(r["region"].strip().lower(), {})[int(r["year"])] = float(r["ci_g_per_kwh"])
    out = [ys[y + 1] / ys[y] for ys in by_region.values() for y in ys
           if y + 1 in ys and ys[y] >= min_ci and ys[y + 1] >= min_ci]
    return np.array(sorted(out))


@lru_cache(maxsize=None)
def step_time_residuals() -> np.ndarray:
    """Measured / predicted step time of the published runs (``step_time_residuals.csv``)."""
    return np.array([float(r["ratio_measured_over_predicted"]) for r in load_csv("step_time_residuals.csv")])


@lru_cache(maxsize=None)
def power_residuals() -> np.ndarray:
    """Measured / predicted node power per accelerator slot on the metered MLPerf rows (``power_residuals.csv``)."""
    return np.array([float(r["ratio_measured_over_predicted"]) for r in load_csv("power_residuals.csv")])


def _table(spec: InputSpec) -> np.ndarray:
    name = spec.params.get("table")
    if name == "region_year_ratios":
        return region_year_ratios(float(spec.params.get("min_ci_g_per_kwh", 50.0)))
    if name == "step_time_residuals":
        return step_time_residuals()
    if name == "power_residuals":
        return power_residuals()
    raise InputError(f"uncertainty.{spec.name}.table", f"unknown table {name!r}")


# ---- sampling ---------------------------------------------------------------------------
def _bounds(spec: InputSpec, point: float) -> tuple[float, float, float]:
    """(low, mode, high) in the units the sample is drawn in."""
    p = spec.params
    if "low_offset" in p:
        lo, hi = point + float(p["low_offset"]), point + float(p["high_offset"])
        mode = point
    else:
        lo, hi = float(p["low"]), float(p["high"])
        m = p.get("mode", "point" if spec.kind == "value" else 1.0)
        mode = point if m == "point" else float(m)
    if p.get("widen_to_point") or "low_offset" in p:
        lo, hi = min(lo, point), max(hi, point)
    if "floor" in p:
        lo = max(lo, float(p["floor"]))
    mode = min(max(mode, lo), hi)
    return lo, mode, hi


def draw(spec: InputSpec, point: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one input (values, or factors for ``kind: factor``)."""
    if spec.distribution == "empirical":
        tab = _table(spec)
        x = rng.choice(tab, size=n)
        scale = float(spec.params.get("scale", 1.0))
        if scale != 1.0:  # stretch about the table's median, in log space
            med = float(np.median(tab))
            x = med * (x / med) ** scale
        return x
    lo, mode, hi = _bounds(spec, point)
    if hi <= lo:
        return np.full(n, mode)
    if spec.distribution == "uniform":
        return rng.uniform(lo, hi, n)
    if spec.distribution == "loguniform":
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return rng.triangular(lo, mode, hi, n)


def quantile(spec: InputSpec, point: float, q: float) -> float:
    """The ``q`` quantile (0..1) of one input, for the one-at-a-time swing."""
    if spec.distribution == "empirical":
        tab = _table(spec)
        scale = float(spec.params.get("scale", 1.0))
        med = float(np.median(tab))
        return float(med * (np.quantile(tab, q, method="inverted_cdf") / med) ** scale)
    lo, mode, hi = _bounds(spec, point)
    if hi <= lo:
        return mode
    if spec.distribution == "uniform":
        return lo + q * (hi - lo)
    if spec.distribution == "loguniform":
        return math.exp(math.log(lo) + q * (math.log(hi) - math.log(lo)))
    c = (mode - lo) / (hi - lo)  # triangular inverse CDF
    return lo + math.sqrt(q * (hi - lo) * (mode - lo)) if q < c else hi - math.sqrt((1 - q) * (hi - lo) * (hi - mode))


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
              inputs: Mapping[str, InputSpec] | None = None) -> Uncertainty:
    """p5/p50/p95 bands and the sensitivity ranking of a :class:`~carbonscaling.carbon.CarbonResult`.

    ``inputs`` defaults to :func:`load_inputs`; a subset propagates only those inputs.
    Reproducible: the same ``seed`` and inputs give the same bands.
    """
    n, s = _check_run(samples, seed)
    specs = dict(load_inputs() if inputs is None else inputs)
    base = base_point(carbon, specs=specs)
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
        specs[name] = _for_model(spec, base)
    rng = np.random.default_rng(s)
    pts = point_values(base)
    x = {name: draw(spec, pts[name], n, rng) for name, spec in specs.items()}
    out = response(base, x)
    point = {k: float(v) for k, v in response(base, {}).items()}
    bands = {q: dict(zip(("p5", "p50", "p95"), (float(v) for v in np.percentile(out[q], PERCENTILES))))
             for q in QUANTITIES}
    meta = {k: {"kind": v.kind, "distribution": v.distribution, "point": pts[k], "source": v.source,
                "verified": v.verified} for k, v in specs.items()}
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
