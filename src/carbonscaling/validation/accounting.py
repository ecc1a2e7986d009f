"""Energy and carbon of a predicted run, in the run's own accounting (like with like).

Published energies are rarely metered. BLOOM's 433,196 kWh is GPU-hours x 0.4 kW (the
A100's TDP) at PUE 1, and its 24.69 t operational is that energy x 57 g/kWh; so the
scored predictions here are made the same way from a method's device-hours, with our
carbon model (:func:`carbonscaling.carbon.run_carbon`) at utilization 1 (device power =
TDP), no node or network power, and the run's PUE (1 when unreported, as these figures
are device-only):

* ``energy_kwh`` = device-hours x TDP x PUE;
* ``operational_tco2e`` = ``energy_kwh`` x the run's grid intensity, only for runs that
  report one (predicting it with an intensity implied by the run's own numbers would just
  restate the device-hours error);
* ``embodied_tco2e``: our embodied model (paper mode, ``power.yaml`` lifetime, with the
  infrastructure share) for the device count and wall clock.

Unscored extras show our full accounting (measured node power driven by the busy share:
accelerators, host, power supplies, fans, switch ports; goodput; the run's PUE else
``power.yaml``'s): ``energy_kwh_full``, ``operational_tco2e_full``.

:func:`with_our_carbon` converts a baseline's device-hours the same way (v2 Fig. 3b does
this for ``reg`` and LLMCarbon); the baseline's own figures are kept as ``<key>_own``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .runs import PublishedRun

CARBON_KEYS = ("energy_kwh", "operational_tco2e", "embodied_tco2e")


def reports_carbon(run: PublishedRun) -> bool:
    """True when the run reports energy or carbon."""
    return any(getattr(run, k) is not None for k in CARBON_KEYS)


def carbon_predictions(run: PublishedRun, system, n_devices: float, device_hours: float,
                       mfu: float | None = None, busy: float | None = None) -> dict[str, float]:
    """Like-for-like energy/carbon for ``device_hours`` on ``n_devices`` (see module doc)."""
    from ..carbon import PAPER_ACCOUNTING, run_carbon

    n = max(1, math.ceil(n_devices - 1e-9))
    pue = run.pue if run.pue is not None else 1.0
    ci = run.carbon_intensity_g_per_kwh
    lfl = run_carbon(None, system, n_devices=n, device_hours=device_hours, utilization=1.0, pue=pue,
                     ci=ci, alpha=1.0, **PAPER_ACCOUNTING)
    energy = lfl.device_energy_kwh * pue
    out = {"energy_kwh": energy, "embodied_tco2e": lfl.embodied_tco2e}
    if ci is not None:
        out["operational_tco2e"] = energy * ci / 1e6
    if busy is not None and math.isfinite(busy) and busy > 0:
        # Full scope: measured node power driven by the busy share, goodput, allocation share.
        full = run_carbon(None, system, n_devices=n, device_hours=device_hours, utilization=min(1.0, busy),
                          pue=run.pue, ci=ci, lifetime_policy="whole_run")
        out["energy_kwh_full"] = full.energy_kwh
        if ci is not None:
            out["operational_tco2e_full"] = full.operational_tco2e
    return out


def with_our_carbon(predictor: Callable[[PublishedRun], Mapping[str, Any]]) -> Callable[[PublishedRun], dict]:
    """Wrap a baseline so its energy/carbon come from its device-hours through our model.

    The device count is the baseline's own ``n_devices`` when it predicts one (LLMC
    searched), else the run's. Runs that report no energy or carbon are left as they are.
    """

    def predict(run: PublishedRun) -> dict[str, Any]:
        raw = dict(predictor(run))
        hours = raw.get("device_hours")
        n = raw.get("n_devices", run.n_devices)
        if not reports_carbon(run) or hours is None or not n or not math.isfinite(hours) or hours <= 0:
            return raw
        from ..hardware import load_system

        for k in CARBON_KEYS:
            if k in raw:
                raw[f"{k}_own"] = raw.pop(k)
        raw.update(carbon_predictions(run, load_system(run.device_key or run.accelerator), n, hours))
        return raw

    predict.__name__ = getattr(predictor, "__name__", "predictor")
    return predict
