"""The LLMCarbon baseline (``LLMC``; Faiz et al., ICLR 2024), as SPEC.md section 6.1 restates it.

LLMCarbon predicts a training setup from the raw parameter count ``P`` alone:

1. per-GPU capacity ``0.03 * memory_GB`` billion parameters; if ``P_B < 8 * cap`` then
   ``PP = 1, TP = ceil(P_B / cap)``, else ``TP = 8, PP = ceil(P_B / (8 cap))``;
2. devices ``= round(f_dev(P) / (TP PP)) * TP * PP``, times 2.5 for memory other than
   80 GB (times 5 for 40 GB);
3. achieved TFLOP/s per GPU from the TP-only fit when ``TP <= 8 and PP == 1``, else the
   pipeline fit; non-80 GB devices rescale it by ``(1 - 7.76/33.46) / 312 * 125``;
4. ``days = 6 P_active D / (devices * TFLOPs * 1e12) / 86400``; energy
   ``= power * devices * hours * PUE``; operational ``= energy * CI``; embodied over the
   accelerator die and per-8-device host items (CPU, DRAM, SSD, "others") over a 5-year life.

All coefficients live in ``data/llmcarbon.yaml``. The known pathologies (about 800 devices
even for 1.3B, a device fit that peaks near 1.03T params and falls after, TP of 3 or 6, no
deadline, A100 throughput for H100s) are kept on purpose: this is a baseline. Unlike
LLMCarbon's own code, the fitted throughput does feed the duration and carbon.

Two modes: *searched* (LLMC's own device count) and *pinned* (the run's reported device
count; only the throughput, hence the time, comes from the fits). Device-hours are the
same in both: ``6 P_active D / TFLOPs`` does not depend on the device count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .._data import load_yaml
from ..errors import InputError
from .runs import FLOPS_PER_PARAM_TOKEN, PublishedRun

Mode = Literal["searched", "pinned"]
SECONDS_PER_DAY = 86400.0
DAYS_PER_YEAR = 365.0


def constants() -> dict:
    """The parsed ``data/llmcarbon.yaml``."""
    return load_yaml("llmcarbon.yaml")


def quadratic(fit: str, x: float) -> float:
    """Evaluate the published fit ``a x^2 + b x + c`` named ``fit``."""
    c = constants()["fits"][fit]
    return c["a"] * x * x + c["b"] * x + c["c"]


def _check_positive(name: str, value: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= hi:
        raise InputError(name, f"must be a number in (0, {hi:g}], got {value!r}")
    return float(value)


def capacity_b_params(memory_gb: float) -> float:
    """Billions of parameters LLMC places on one device: ``0.03 * memory_GB``."""
    _check_positive("memory_gb", memory_gb, 1e6)
    return constants()["parallelism"]["capacity_b_params_per_memory_gb"] * memory_gb


def parallelism(params: float, memory_gb: float) -> tuple[int, int]:
    """LLMC's ``(TP, PP)`` rule for ``params`` (raw count) on devices with ``memory_gb``."""
    _check_positive("params", params, 1e16)
    cap = capacity_b_params(memory_gb)
    max_tp = constants()["parallelism"]["max_tp"]
    p_b = params / 1e9
    if p_b < max_tp * cap:
        return math.ceil(p_b / cap), 1
    return max_tp, math.ceil(p_b / (max_tp * cap))


def device_multiplier(memory_gb: float) -> float:
    """1 for 80 GB devices, 5 for 40 GB, 2.5 otherwise."""
    c = constants()["device_multiplier"]
    if memory_gb == c["reference_memory_gb"]:
        return 1.0
    return float(c["by_memory_gb"].get(memory_gb, c["by_memory_gb"].get(int(memory_gb), c["otherwise"])))


def device_count(params: float, memory_gb: float) -> float:
    """LLMC's device count: ``round(f_dev(P) / (TP PP)) * TP * PP * multiplier``.

    Fractional (x.5) when the 2.5 multiplier meets an odd count: kept exact, as the formula.
    """
    tp, pp = parallelism(params, memory_gb)
    groups = round(quadratic("device_count", params) / (tp * pp))
    return groups * tp * pp * device_multiplier(memory_gb)


def batch_size(pp: int) -> float:
    """LLMC's batch-size fit (sequences) against the pipeline degree."""
    return quadratic("batch_size", pp)


def throughput_rescale(memory_gb: float) -> float:
    """1 for 80 GB devices, else ``(1 - 7.76/33.46) / 312 * 125``."""
    c = constants()["throughput_rescale"]
    if memory_gb == c["reference_memory_gb"]:
        return 1.0
    return (1 - c["loss_pct"] / c["loss_base_pct"]) / c["reference_peak_tflops"] * c["target_peak_tflops"]


def achieved_tflops(params: float, memory_gb: float) -> tuple[float, str]:
    """Achieved TFLOP/s per device and the fit used (``tp_only`` or ``pipeline``)."""
    tp, pp = parallelism(params, memory_gb)
    fit = "tp_only" if tp <= constants()["parallelism"]["max_tp"] and pp == 1 else "pipeline"
    return quadratic(f"tflops_{fit}", params) * throughput_rescale(memory_gb), fit


def embodied_kg(n_devices: float, days: float, die_area_cm2: float, logic_cpa_kg_per_cm2: float) -> dict[str, float]:
    """Embodied kgCO2e per item: ``unit * CPA * count * days / (lifetime * 365)``.

    The accelerator die counts once per device; host items once per 8 devices (whole hosts).
    """
    c = constants()["embodied"]
    share = days / (c["lifetime_years"] * DAYS_PER_YEAR)
    hosts = math.ceil(n_devices / c["devices_per_host"])
    out = {"accelerator": die_area_cm2 * logic_cpa_kg_per_cm2 * n_devices * share}
    for name, item in c["host_items"].items():
        out[name] = item["unit"] * item["cpa"] * hosts * share
    return out


@dataclass(frozen=True)
class LLMCResult:
    """One LLMC estimate. Times and carbon are NaN when no token count was given."""

    mode: Mode
    device: str
    params: float
    params_active: float
    tokens: float | None
    tp: int
    pp: int
    n_devices: float
    batch_size_sequences: float
    throughput_fit: str
    achieved_tflops: float
    mfu: float
    train_flops: float
    duration_days: float
    device_hours: float
    avg_system_power_w: float
    pue: float
    ci_g_per_kwh: float
    energy_kwh: float
    operational_tco2e: float
    embodied_tco2e: float
    embodied_kg_by_item: dict[str, float] = field(default_factory=dict)


def _device(device: str):
    from ..hardware import load_system, logic_cpa

    dev = load_system(device).device
    return dev, logic_cpa(dev)


def _avg_power_w(device, override: float | None) -> float:
    if override is not None:
        return _check_positive("avg_system_power_w", override, 1e6)
    table = constants()["operational"].get("avg_system_power_w_by_device") or {}
    return float(table.get(device.name, device.tdp_w))


def estimate(params: float, tokens: float | None, device: str = "A100-80GB", *,
             params_active: float | None = None, n_devices: int | None = None,
             pue: float | None = None, ci_g_per_kwh: float | None = None,
             avg_system_power_w: float | None = None) -> LLMCResult:
    """LLMC's estimate for a ``params``-parameter model trained on ``tokens`` tokens.

    ``n_devices`` pins the device count (mode ``pinned``); otherwise LLMC searches it.
    ``params_active`` (MoE) sets the FLOPs; the fits always take the total ``params``.
    ``pue`` and ``ci_g_per_kwh`` default to ``data/power.yaml``; power to the device TDP.
    """
    _check_positive("params", params, 1e16)
    active = params if params_active is None else _check_positive("params_active", params_active, params)
    if tokens is not None:
        _check_positive("tokens", tokens, 1e18)
    from ..carbon import check_number, defaults

    d = defaults()
    pue = check_number("pue", d["pue"] if pue is None else pue, 1, 3)
    ci = check_number("ci_g_per_kwh", d["ci_g_per_kwh"] if ci_g_per_kwh is None else ci_g_per_kwh, 0, 2000)
    dev, cpa = _device(device)
    tp, pp = parallelism(params, dev.hbm_gb)
    if n_devices is None:
        mode, count = "searched", device_count(params, dev.hbm_gb)
    else:
        mode, count = "pinned", _check_positive("n_devices", n_devices, 1e8)
    tflops, fit = achieved_tflops(params, dev.hbm_gb)
    power = _avg_power_w(dev, avg_system_power_w)
    flops = FLOPS_PER_PARAM_TOKEN * active * tokens if tokens is not None else math.nan
    days = flops / (count * tflops * 1e12) / SECONDS_PER_DAY
    hours = count * days * 24.0
    energy = power * hours * pue / 1000.0
    emb = embodied_kg(count, days, dev.die_area_mm2 / 100.0, cpa) if tokens is not None else {}
    return LLMCResult(
        mode=mode, device=dev.name, params=float(params), params_active=float(active), tokens=tokens,
        tp=tp, pp=pp, n_devices=count, batch_size_sequences=batch_size(pp), throughput_fit=fit,
        achieved_tflops=tflops, mfu=tflops / dev.peak_tflops, train_flops=flops, duration_days=days,
        device_hours=hours, avg_system_power_w=power, pue=pue, ci_g_per_kwh=float(ci), energy_kwh=energy,
        operational_tco2e=energy * ci / 1e6, embodied_tco2e=sum(emb.values()) / 1000.0 if emb else math.nan,
        embodied_kg_by_item=emb,
    )


def predict_run(run: PublishedRun, mode: Mode = "searched", *, pue_when_unreported: float = 1.0) -> dict[str, float]:
    """LLMC's predictions for one run, keyed as :data:`runs.REPORTED_QUANTITIES`.

    The run's PUE and carbon intensity are used where reported; reported energies are
    device-only (BLOOM: GPU-hours x TDP), so the PUE defaults to ``pue_when_unreported``.
    Operational carbon is only predicted for runs that report their carbon intensity.
    ``mode="pinned"`` needs the run's device count and then predicts no ``n_devices``.
    LLMC's throughput fits count recompute FLOPs (Megatron's counter), yet LLMC divides model
    FLOPs by them: the same figure is returned as ``mfu`` and ``hfu``.
    """
    if mode not in ("searched", "pinned"):
        raise InputError("mode", f"must be 'searched' or 'pinned', got {mode!r}")
    if mode == "pinned" and run.devices is None:
        raise InputError(f"runs[{run.run_id}].n_devices", "pinned mode needs a reported device count")
    res = estimate(run.params_total, run.training_tokens, run.device_key or run.accelerator,
                   params_active=run.params_active, n_devices=run.devices if mode == "pinned" else None,
                   pue=run.pue if run.pue is not None else pue_when_unreported,
                   ci_g_per_kwh=run.carbon_intensity_g_per_kwh)
    out = {
        "device_hours": res.device_hours, "duration_days": res.duration_days,
        "mfu": res.mfu, "hfu": res.mfu,
        "tflops_per_device": res.achieved_tflops, "hfu_tflops_per_device": res.achieved_tflops,
        "energy_kwh": res.energy_kwh, "embodied_tco2e": res.embodied_tco2e,
        "tp": res.tp, "pp": res.pp,
    }
    if mode == "searched":
        out["n_devices"] = res.n_devices
    if run.carbon_intensity_g_per_kwh is not None:
        out["operational_tco2e"] = res.operational_tco2e
    return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


def llmc_predictor(mode: Mode = "searched", *, pue_when_unreported: float = 1.0) -> Callable[[PublishedRun], dict]:
    """A predictor for :func:`carbonscaling.validation.harness.evaluate`."""
    if mode not in ("searched", "pinned"):
        raise InputError("mode", f"must be 'searched' or 'pinned', got {mode!r}")

    def predict(run: PublishedRun) -> dict[str, float]:
        m = "pinned" if mode == "pinned" and run.devices is not None else "searched"
        return predict_run(run, m, pue_when_unreported=pue_when_unreported)

    predict.__name__ = f"llmc_{mode}"
    return predict
