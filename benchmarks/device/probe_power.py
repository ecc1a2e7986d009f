"""Board power against utilisation: NVML (nvidia-ml-py) or nvidia-smi sampling, and a duty-cycle driver.

Average power over a window comes from NVML's energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded) where it exists: the
difference over the window divided by its length does not depend on the sampling rate or
on the smoothing of ``nvmlDeviceGetPowerUsage``. Samples (every 50 ms) add the median and
maximum power, SM and memory clocks, NVML's utilisation and temperature. The card's
settings are only read, never changed.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time


class NullSampler:
    """No power sensor (CPU smoke run): windows are timed, nothing is read."""

    name = "none"

    def start(self):
        self.t0 = time.monotonic()

    def stop(self) -> dict:
        return {"window_s": time.monotonic() - self.t0, "samples": 0}


class _ThreadSampler:
    period_s = 0.05

    def start(self):
        self.rows, self._stop = [], threading.Event()
        self.e0, self.t0 = self.energy_mj(), time.monotonic()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.rows.append(self.sample())
            except Exception:  # noqa: BLE001 - a failed read drops one sample
                pass
            self._stop.wait(self.period_s)

    def stop(self) -> dict:
        self._stop.set()
        self._th.join()
        dt, e1 = time.monotonic() - self.t0, self.energy_mj()
        out = {"window_s": dt, "samples": len(self.rows), "power_limit_w": self.power_limit_w()}
        if self.e0 is not None and e1 is not None:
            out["energy_j"] = (e1 - self.e0) / 1e3
            out["watts_energy"] = out["energy_j"] / dt
        cols = {k: [r[k] for r in self.rows if r.get(k) is not None] for k in
                ("watts", "sm_clock_mhz", "mem_clock_mhz", "gpu_util_pct", "temp_c")}
        for k, v in cols.items():
            if v:
                out["watts_median" if k == "watts" else k] = statistics.median(v)
        if cols["watts"]:
            out["watts_max"] = max(cols["watts"])
        return out


class NvmlSampler(_ThreadSampler):
    name = "nvml"

    def __init__(self, index: int = 0):
        import pynvml
        pynvml.nvmlInit()
        self.nv, self.h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)

    def energy_mj(self):
        try:
            return float(self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h))
        except Exception:  # noqa: BLE001 - not every board has the counter
            return None

    def power_limit_w(self):
        try:
            return self.nv.nvmlDeviceGetEnforcedPowerLimit(self.h) / 1e3
        except Exception:  # noqa: BLE001
            return None

    def sample(self) -> dict:
        nv, h = self.nv, self.h
        return {"watts": nv.nvmlDeviceGetPowerUsage(h) / 1e3,
                "sm_clock_mhz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
                "mem_clock_mhz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
                "gpu_util_pct": nv.nvmlDeviceGetUtilizationRates(h).gpu,
                "temp_c": nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)}


class SmiSampler(_ThreadSampler):
    """nvidia-smi per sample (slower: about every 0.1-0.2 s); no energy counter."""

    name = "nvidia-smi"
    period_s = 0.1
    _Q = "power.draw,clocks.sm,clocks.mem,utilization.gpu,temperature.gpu,power.limit"

    def __init__(self, index: int = 0):
        self.index = str(index)
        self._read()

    def _read(self) -> list[float | None]:
        out = subprocess.run(["nvidia-smi", "-i", self.index, f"--query-gpu={self._Q}",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5,
                             check=True).stdout.strip().split(",")
        return [_num(v) for v in out]

    def energy_mj(self):
        return None

    def power_limit_w(self):
        return self._read()[5]

    def sample(self) -> dict:
        w, sm, mem, util, temp, _ = self._read()
        return {"watts": w, "sm_clock_mhz": sm, "mem_clock_mhz": mem, "gpu_util_pct": util, "temp_c": temp}


def _num(v: str):
    try:
        return float(v)
    except ValueError:
        return None


def make_sampler(want: bool):
    """NVML where nvidia-ml-py imports, else nvidia-smi, else :class:`NullSampler`."""
    if not want:
        return NullSampler()
    for cls in (NvmlSampler, SmiSampler):
        try:
            return cls()
        except Exception:  # noqa: BLE001 - fall through to the next sensor
            continue
    return NullSampler()


def duty_window(kit, sampler, fn, duty: float, window_s: float, period_s: float = 0.1, preroll_s: float = 1.0):
    """Run ``fn`` for a ``duty`` share of each ``period_s`` for ``window_s`` (after a settling pre-roll).

    Returns the sampler's summary plus ``duty_measured`` (busy wall time / window) and ``calls``.
    """
    fn()
    kit.sync()

    def periods(seconds):
        busy, calls, t0 = 0.0, 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            p0 = time.monotonic()
            while duty > 0 and time.monotonic() - p0 < duty * period_s:
                fn()
                kit.sync()  # one call in flight: the busy share is what the host clock saw
                calls += 1
            busy += time.monotonic() - p0
            time.sleep(max(0.0, period_s - (time.monotonic() - p0)))
        return busy, calls
    periods(preroll_s)
    sampler.start()
    busy, calls = periods(window_s)
    out = sampler.stop()
    out.update(duty_measured=busy / out["window_s"], calls=calls)
    return out

