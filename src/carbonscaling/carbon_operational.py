"""Operational energy of a training run: power per device by term, goodput shares, kWh.

Power models (:mod:`carbonscaling.power`): ``measured`` (metered node power, accelerators
driven by their busy share), ``nameplate`` (TDP + system maximum) and ``paper`` (static +
alpha x dynamic x MFU, :func:`power_split`). Wall clock is the steady-state one over goodput
(:mod:`carbonscaling.goodput`). Functions work on arrays of layouts as well as scalars;
:mod:`carbonscaling.carbon` prices the kWh (PUE, grid intensity). Formulas: docs/carbon.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import power as pw
from ._data import load_yaml
from .carbon_settings import POWER_SPLITS, Accounting, _choice, nodes_charged
from .goodput import goodput_terms
from .hardware import System


# ---- power per device ---------------------------------------------------------------
def power_split(tdp_w: float, mode: str = "default") -> tuple[float, float]:
    """Static and dynamic device power of the ``paper`` power model.

    Dynamic is 0.158 TDP (``power.yaml: dynamic_fraction_of_tdp``), static the rest;
    ``"low_static"`` swaps the shares (v1 Fig. 4).

    Parameters
    ----------
    tdp_w : float
        The device's thermal design power (W).
    mode : {'default', 'low_static'}, optional
        Which share is static (default ``'default'``).

    Returns
    -------
    p_static_w, p_dynamic_w : float
        Watts.

    References
    ----------
    Fernandez et al., "Hardware Scaling Trends and Diminishing Returns in Large-Scale
    Distributed Training", 2024 (dynamic share); Jiang and Chen, CarbonScaling v1, Fig. 4.
    """
    frac = float(load_yaml("power.yaml")["dynamic_fraction_of_tdp"])
    if _choice("power_split", mode, POWER_SPLITS) == "low_static":
        frac = 1.0 - frac
    p_dyn = frac * tdp_w
    return tdp_w - p_dyn, p_dyn


def power_terms_w(system: System, n_devices, util, acc: Accounting, state: str = "train") -> dict[str, Any]:
    """Power per device (W) of each operational term in ``state`` (train | wait | idle).

    ``util`` drives the accelerators: the busy share for ``measured`` (the step model's compute
    share), MFU for ``paper``; ``nameplate`` ignores it. ``wait`` and ``idle`` (checkpoint
    stalls, restarts) differ from ``train`` only in the ``measured`` model.

    Parameters
    ----------
    system : System
        Device TDP (W), node power beyond the accelerators (W), devices per node, network.
    n_devices : int or ndarray
        Accelerators in the job (sets the host share charged under the allocation rule).
    util : float or ndarray
        Busy share (``measured``) or MFU (``paper``), 0..1.
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).
    state : {'train', 'wait', 'idle'}, optional
        Job state (default ``'train'``).

    Returns
    -------
    dict of str to ndarray
        Watts per device slot by term: ``device`` (or ``device_static`` / ``device_dynamic``
        for ``paper``), ``host`` or ``node_other``, ``power_conversion``, ``cooling``, ``network``.

    References
    ----------
    Node power fitted on the metered MLPerf Training power rows (``power.yaml``; docs/carbon.md);
    the ``paper`` model is CarbonScaling v1's ``P_static + alpha P_dynamic MFU``.
    """
    dev, per_node = system.device, system.devices_per_node
    n = np.asarray(n_devices, dtype=float)
    host_per_device = nodes_charged(n, per_node, acc.allocation) * per_node / n
    if acc.power_model == "paper":
        p_static, p_dyn = power_split(dev.tdp_w, acc.power_split)
        return {"device_static": p_static + 0.0 * n, "device_dynamic": acc.alpha * p_dyn * np.asarray(util) + 0.0 * n,
                "node_other": system.node_other_power_w / per_node * host_per_device,
                "network": system.network_power_w_per_device + 0.0 * n}
    if acc.power_model == "nameplate":
        return {"device": dev.tdp_w + 0.0 * n, "node_other": system.node_other_power_w / per_node * host_per_device,
                "network": system.network_power_w_per_device + 0.0 * n}
    c = pw.measured_constants()
    if state == "idle":
        device = c["gpu_idle_fraction_of_tdp"] * dev.tdp_w + 0.0 * n
    else:
        device = pw.accelerator_power_w(dev.tdp_w, 0.0 if state == "wait" else util, c) + 0.0 * n
    host = pw.host_power_w(system.node_other_power_w, c) / per_node * host_per_device
    ac = (device + host) / c["psu_efficiency"]
    air = pw.effective_cooling(dev.kind, acc.cooling) == "air"
    cooling = ac * c["air_cooling_fraction_of_it"] if air else 0.0 * n
    return {"device": device, "host": host, "power_conversion": ac - device - host, "cooling": cooling,
            "network": pw.network_power_w_per_device(n, per_node, c)}


def goodput_shares(n_devices, acc: Accounting) -> dict[str, Any]:
    """Shares of expected wall clock spent in each state.

    Parameters
    ----------
    n_devices : int or ndarray
        Accelerators (interruptions grow with them).
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).

    Returns
    -------
    dict of str to ndarray
        Fractions of expected wall clock: ``goodput``, ``train`` (goodput + rework +
        evaluation, drawn at training power), ``wait`` (checkpoint stalls), ``idle``
        (restarts), their parts, and ``mttf_h`` / ``checkpoint_interval_h`` (hours).

    References
    ----------
    Llama Team, "The Llama 3 Herd of Models", arXiv 2407.21783, 2024, Sec. 3.3.4
    (interruption rate; ``goodput.yaml``).
    """
    if acc.goodput is not None:
        zero = 0.0 * np.asarray(n_devices, dtype=float)
        return {"goodput": acc.goodput + zero, "train": acc.goodput + zero, "wait": 1.0 - acc.goodput + zero,
                "idle": zero, "restart": zero, "rework": zero, "checkpoint": zero, "evaluation": zero,
                "mttf_h": zero + np.inf, "checkpoint_interval_h": zero + np.inf}
    g = goodput_terms(n_devices, interruptions_per_device_day=acc.interruptions_per_device_day,
                      restart_minutes=acc.restart_minutes, checkpoint_minutes=acc.checkpoint_minutes,
                      evaluation_fraction=acc.evaluation_fraction)
    return {**g, "train": g["goodput"] + g["rework"] + g["evaluation"], "wait": g["checkpoint"], "idle": g["restart"]}


def operational_kwh(system: System, n_devices, steady_h, util, acc: Accounting) -> dict[str, Any]:
    """Expected wall clock and kWh of each operational term (IT side, before PUE).

    Works on arrays (one entry per layout) as well as scalars.

    Parameters
    ----------
    system : System
        The system.
    n_devices : int or ndarray
        Accelerators.
    steady_h : float or ndarray
        Steady-state wall clock (hours), before goodput.
    util : float or ndarray
        Busy share or MFU (see :func:`power_terms_w`).
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).

    Returns
    -------
    dict
        ``wall_h`` (expected hours, steady / goodput), ``goodput`` (:func:`goodput_shares`),
        ``power_w`` (training W per device by term) and ``kwh`` (kWh by term).
    """
    g = goodput_shares(n_devices, acc)
    with np.errstate(divide="ignore", invalid="ignore"):
        wall = np.asarray(steady_h, dtype=float) / g["goodput"]
    train, wait, idle = (power_terms_w(system, n_devices, util, acc, s) for s in ("train", "wait", "idle"))
    n = np.asarray(n_devices, dtype=float)
    kwh = {k: n * wall * (g["train"] * train[k] + g["wait"] * wait[k] + g["idle"] * idle[k]) / 1000.0
           for k in train}
    return {"wall_h": wall, "goodput": g, "power_w": train, "kwh": kwh}
