"""Node power of a training run: accelerators, host, network and cooling.

The ``measured`` model (the default, docs/carbon.md "Node power") draws each accelerator

    P_acc = TDP x (busy_frac x b + wait_frac x (1 - b))

where ``b`` is the share of wall clock the accelerator runs compute kernels (the step
model's compute + optimizer share, not MFU: a GPU at 40 % MFU is still at its power limit
while its GEMMs run), plus the host's share of the node, divided by the power supplies'
efficiency, times an air-cooling share for air-cooled servers; switches are charged per
fabric port. Constants: ``power.yaml`` ``measured`` block (cited, assumption or fitted).
:func:`fit_measured_constants` refits the fitted ones on the metered MLPerf Training rows
(``mlperf_power.csv``) and :func:`mlperf_check` predicts every row. All functions accept
numpy arrays as well as floats, so the search's carbon objective prices layouts with the
very formulas the final accounting uses.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ._data import load_csv, load_yaml

POWER_MODELS = ("measured", "nameplate", "paper")
COOLING_MODES = ("auto", "air", "liquid")


def effective_cooling(kind: str, cooling: str) -> str:
    """``auto``: TPUs are liquid-cooled (Google TPU v3 onwards), GPU servers air-cooled (DGX/HGX)."""
    if cooling != "auto":
        return cooling
    return "liquid" if kind == "tpu" else "air"


@lru_cache(maxsize=None)
def measured_constants() -> dict[str, float]:
    """The ``measured`` block of ``power.yaml`` as ``{name: value}``."""
    return {k: float(v["value"]) for k, v in load_yaml("power.yaml")["measured"].items()}


def accelerator_power_w(tdp_w, busy, c: dict[str, float] | None = None):
    """Accelerator power (W) at busy share ``busy`` in [0, 1] of a running job."""
    c = c or measured_constants()
    b = np.clip(busy, 0.0, 1.0)
    return tdp_w * (c["gpu_busy_fraction_of_tdp"] * b + c["gpu_wait_fraction_of_tdp"] * (1.0 - b))


def host_power_w(node_other_power_w: float, c: dict[str, float] | None = None) -> float:
    """Host power per node during training (W, DC): a share of the nameplate beyond the devices."""
    c = c or measured_constants()
    return c["host_fraction_of_node_other"] * node_other_power_w


def fabric_ports_per_device(n_devices, devices_per_node: int, radix: float | None = None):
    """Switch ports per device of a non-blocking fat tree: 0 inside one node, else ``2 tiers - 1``.

    One tier serves ``radix`` endpoints, two ``radix^2 / 2``, three ``radix^3 / 4``.
    """
    r = radix if radix is not None else measured_constants()["switch_radix"]
    n = np.asarray(n_devices, dtype=float)
    tiers = np.where(n <= r, 1, np.where(n <= r * r / 2, 2, 3))
    return np.where(n <= devices_per_node, 0, 2 * tiers - 1)


def network_power_w_per_device(n_devices, devices_per_node: int, c: dict[str, float] | None = None):
    """Switch power per device (W): measured W per port x ports per device."""
    c = c or measured_constants()
    return c["switch_w_per_port"] * fabric_ports_per_device(n_devices, devices_per_node, c["switch_radix"])


def slot_power_w(tdp_w: float, node_other_power_w: float, devices_per_node: int, busy, *,
                 cooling: str = "air", reading: str = "ac", c: dict[str, float] | None = None):
    """Power of one accelerator slot at the node input (W): the device plus its share of the
    host, after the power supplies (``reading="ac"``; ``"dc"`` skips them), with the fan
    share when air-cooled. Switches are not in it (MLPerf's ``mean_w_per_accelerator``)."""
    c = c or measured_constants()
    it = accelerator_power_w(tdp_w, busy, c) + host_power_w(node_other_power_w, c) / devices_per_node
    if reading == "ac":
        it = it / c["psu_efficiency"]
    return it * (1.0 + c["air_cooling_fraction_of_it"]) if cooling == "air" else it


# ---- calibration on metered MLPerf Training runs ---------------------------------------
def mlperf_rows() -> list[dict[str, Any]]:
    """``mlperf_power.csv`` rows (a copy of ../shared/data/mlperf_power_finetune.csv's facts)."""
    out = []
    for r in load_csv("mlperf_power.csv"):
        out.append({**r, **{k: float(r[k]) for k in ("n_accelerators", "n_nodes", "run_seconds", "mean_node_w",
                                                       "mean_w_per_accelerator")}})
    return out


def _system(device_key: str):
    from .hardware import load_system

    return load_system(device_key)


def busy_from_scaling(rows: list[dict[str, Any]] | None = None) -> dict[str, float | None]:
    """Busy share of each row: 1 for a single node (TP inside NVLink, compute-bound), else the
    measured strong-scaling efficiency against the same submitter-family's 1-node run at the
    same global batch (``T_1 n_1 / (T_n n_n)``); Dell's 8-node run is scaled from SMC's by the
    time-to-train ratio. ``None`` where no same-batch reference exists (64 nodes, GBS 64)."""
    rows = rows or mlperf_rows()
    one = {r["device_key"]: r for r in rows if r["n_nodes"] == 1 and r["row_id"].startswith("smc")}
    smc8 = next(r for r in rows if r["row_id"] == "smc_h100_8n_ac")
    ref = one["H100-SXM"]
    b8 = ref["run_seconds"] * ref["n_accelerators"] / (smc8["run_seconds"] * smc8["n_accelerators"])
    out: dict[str, float | None] = {}
    for r in rows:
        if r["n_nodes"] == 1:
            out[r["row_id"]] = 1.0
        elif r["n_nodes"] == 8:
            out[r["row_id"]] = b8 * smc8["run_seconds"] / r["run_seconds"]
        else:
            out[r["row_id"]] = None
    return out


def fit_measured_constants(rows: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Refit the three ``fitted`` constants of ``power.yaml`` (see their ``source``)."""
    rows = rows or mlperf_rows()
    c = dict(measured_constants())
    eta, busy = c["psu_efficiency"], busy_from_scaling(rows)
    shares = []
    for r in rows:
        if r["n_nodes"] == 1 and r["reading"] == "ac" and r["cooling"] != "air":
            s = _system(r["device_key"])
            dc = r["mean_node_w"] * eta
            shares.append((dc - s.devices_per_node * c["gpu_busy_fraction_of_tdp"] * s.device.tdp_w)
                          / s.node_other_power_w)
    c["host_fraction_of_node_other"] = float(np.mean(shares))
    r8 = next(r for r in rows if r["row_id"] == "smc_h100_8n_ac")
    s = _system(r8["device_key"])
    b = busy[r8["row_id"]]
    acc = r8["mean_w_per_accelerator"] * eta - host_power_w(s.node_other_power_w, c) / s.devices_per_node
    c["gpu_wait_fraction_of_tdp"] = float((acc / s.device.tdp_w - c["gpu_busy_fraction_of_tdp"] * b) / (1 - b))
    dell = next(r for r in rows if r["cooling"] == "air")
    s = _system(dell["device_key"])
    c["air_cooling_fraction_of_it"] = 0.0
    liquid = slot_power_w(s.device.tdp_w, s.node_other_power_w, s.devices_per_node, busy[dell["row_id"]],
                          cooling="liquid", c=c)
    c["air_cooling_fraction_of_it"] = float(dell["mean_w_per_accelerator"] / liquid - 1.0)
    return {k: c[k] for k in ("host_fraction_of_node_other", "gpu_wait_fraction_of_tdp",
                              "air_cooling_fraction_of_it")}


def mlperf_check(rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Predicted W per accelerator slot for each metered row next to the measured value.

    Rows without a same-batch busy reference are predicted at the 8-node busy share (an
    assumption, flagged) and also report the busy share that would match the measurement.
    """
    rows = rows or mlperf_rows()
    c = measured_constants()
    busy = busy_from_scaling(rows)
    b8 = busy["smc_h100_8n_ac"]
    out = []
    for r in rows:
        s = _system(r["device_key"])
        cool = "air" if r["cooling"] == "air" else "liquid"
        b = busy[r["row_id"]]
        args = (s.device.tdp_w, s.node_other_power_w, s.devices_per_node)
        pred = float(slot_power_w(*args, b if b is not None else b8, cooling=cool, reading=r["reading"], c=c))
        at_tdp = float(slot_power_w(*args, 1.0, cooling=cool, reading=r["reading"], c=c))
        lo = float(slot_power_w(*args, 0.0, cooling=cool, reading=r["reading"], c=c))
        implied = (r["mean_w_per_accelerator"] - lo) / (at_tdp - lo) if at_tdp > lo else float("nan")
        out.append({"row_id": r["row_id"], "device": s.device.name, "n_nodes": int(r["n_nodes"]),
                    "reading": r["reading"], "cooling": r["cooling"],
                    "busy": b if b is not None else b8, "busy_source": "scaling" if b is not None else "assumed (8-node)",
                    "measured_w": r["mean_w_per_accelerator"], "predicted_w": pred,
                    "error": pred / r["mean_w_per_accelerator"] - 1.0, "implied_busy": float(implied),
                    "nameplate_w": (s.device.tdp_w + s.node_other_power_w / s.devices_per_node)})
    return out


def busy_share(step) -> Any:
    """Share of a step the accelerators run compute kernels: ``(compute + optimizer + overlap
    slowdown) / step time`` of a :class:`~carbonscaling.perf.step.StepResult` (arrays or 0-d).

    This, not MFU, drives accelerator power in the ``measured`` model: during GEMMs a GPU sits at
    its power limit whatever fraction of peak FLOP/s it reaches; in exposed communication, the
    pipeline bubble and waits it draws the lower ``gpu_wait_fraction_of_tdp``.
    """
    busy = (np.asarray(step.compute_s) + np.asarray(step.optimizer_s) + np.asarray(step.overlap_slowdown_s))
    return np.clip(busy / np.asarray(step.step_time_s), 1e-9, 1.0)
