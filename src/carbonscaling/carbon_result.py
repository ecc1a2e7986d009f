"""The carbon of one run as a frozen result: :class:`CarbonResult` and its read-only breakdown."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping


class FrozenDict(dict):
    """A read-only dict: JSON-, pickle- and ``dataclasses.asdict``-friendly, unlike mappingproxy."""

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("CarbonResult.breakdown is read-only")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


@dataclass(frozen=True)
class CarbonResult:
    """Carbon of one run. Energies in kWh: ``energy_kwh`` is facility energy (IT x PUE);
    ``device_energy_kwh`` / ``other_energy_kwh`` (node-other + network) and their sum
    ``it_energy_kwh`` are IT-side, before PUE. Carbon in tCO2e. ``breakdown`` holds every
    intermediate and the inputs used (flat, JSON-safe); ``scope`` names the terms counted."""

    energy_kwh: float
    it_energy_kwh: float
    device_energy_kwh: float
    other_energy_kwh: float
    operational_tco2e: float
    embodied_tco2e: float
    total_tco2e: float
    embodied_low_tco2e: float
    embodied_high_tco2e: float
    embodied_mode: str
    embodied_source: str
    ci_source: str
    breakdown: Mapping[str, Any]
    scope: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "breakdown", FrozenDict(self.breakdown))

    @property
    def total_low_tco2e(self) -> float:
        """Operational plus the embodied low bound (tCO2e)."""
        return self.operational_tco2e + self.embodied_low_tco2e

    @property
    def total_high_tco2e(self) -> float:
        """Operational plus the embodied high bound (tCO2e)."""
        return self.operational_tco2e + self.embodied_high_tco2e

    def _top(self) -> dict[str, Any]:
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "breakdown"}
        return {**top, "total_low_tco2e": self.total_low_tco2e, "total_high_tco2e": self.total_high_tco2e}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the totals at top level and ``breakdown`` as a nested dict.

        Returns
        -------
        dict
            Energies in kWh, carbon in tCO2e, sources and scope.
        """
        return {**self._top(), "breakdown": dict(self.breakdown)}

    def to_row(self) -> dict[str, Any]:
        """One flat dict (totals then breakdown), e.g. for a pandas row.

        Returns
        -------
        dict
            Breakdown keys and the top-level totals in one level.
        """
        return {**self.breakdown, **self._top()}
