"""Stage 2: accelerators, the systems that host them, and projection N years ahead.

:class:`Device` is one accelerator (compute, memory, links, power, silicon);
:class:`System` wraps it with the node and network it lives in. Both are
immutable. :func:`load_system` reads the cited catalog (``data/hardware.yaml``)
or a user YAML file; :func:`project` applies the papers' annual technology
scaling rates (``data/tech_scaling_rates.csv``).
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._data import load_csv, load_yaml, read_user_yaml
from .errors import InputError, UnknownNameError, from_validation
from .formats import canonical_precision, number_format

#: Verification flags a catalog cell may carry (``cell_flags``); the last two need a reason.
CELL_FLAGS = ("datasheet", "secondary", "measured", "paper", "derived", "unverified", "assumed")
UNVERIFIED_FLAGS = ("unverified", "assumed")


class Device(BaseModel):
    """One accelerator. Bandwidths as vendors quote them (see hardware.yaml)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    kind: Literal["gpu", "tpu", "asic"] = "gpu"
    vendor: str = ""
    display_name: str = ""
    peak_tflops: float = Field(gt=0, le=1e7, description="dense FP16/BF16 TFLOP/s")
    peak_tflops_fp8: float | None = Field(default=None, gt=0, le=1e7, description="dense FP8 TFLOP/s")
    peak_tflops_fp4: float | None = Field(default=None, gt=0, le=1e7, description="dense FP4 (NVFP4/MXFP4) TFLOP/s")
    peak_tflops_tf32: float | None = Field(default=None, gt=0, le=1e7,
                                           description="dense TF32 TFLOP/s (data/tf32.yaml): FP32-operand GEMMs "
                                                       "such as an FP32 MoE router's backward")
    formats: tuple[str, ...] = Field(default=(), description="number formats the tensor cores run; empty: bf16, "
                                                             "fp16, and fp8 when an 8-bit rate is given")
    hbm_gb: float = Field(gt=0, le=1e6)
    hbm_gb_s: float = Field(gt=0, le=1e8)
    scale_up_gb_s: float = Field(gt=0, le=1e8, description="NVLink/ICI, bidirectional aggregate per device")
    tdp_w: float = Field(gt=0, le=1e6)
    die_area_mm2: float = Field(gt=0, le=1e6)
    process_node: str = Field(description="logic process, a key of cpa.csv (e.g. 7nm)")
    hbm_type: str = Field(description="HBM generation, a key of cpa.csv (e.g. HBM2e)")
    compute_units: int = Field(gt=0, le=10**6, description="SMs / CUs / MXUs, for wave quantization")
    sram_mb: float = Field(gt=0, le=1e7, description="L2 + shared memory, MB")
    gemm_efficiency_max: float | None = Field(
        default=None, gt=0, le=1, description="achievable fraction of peak on large GEMMs; default perf.yaml"
    )
    gemm_efficiency_max_fp8: float | None = Field(
        default=None, gt=0, le=1, description="the same for 8- and 4-bit GEMMs; default gemm_efficiency_max"
    )
    n_dies: int | None = Field(default=None, gt=0, le=1000)
    mma_bf16_flop_per_clk_per_sm: float | None = Field(
        default=None, gt=0, le=1e6, description="dense BF16 tensor-core FLOP per clock per SM (data/sfu.yaml)")
    sfu_ex2_per_clk_per_sm: float | None = Field(
        default=None, gt=0, le=1e6, description="special-function exponentials (MUFU.EX2) per clock per SM "
                                                "(data/sfu.yaml); none: attention is costed by its matmuls alone")
    host_link_gb_s: float | None = Field(
        default=None, gt=0, le=1e5, description="CPU-GPU link, GB/s per direction per GPU (data/host_link.yaml); "
                                                "none: activation CPU offloading is refused")
    host_dram_gb: float | None = Field(
        default=None, gt=0, le=1e6, description="host (CPU) memory per GPU, GB (data/host_memory.yaml): what "
                                                "offloaded activations may fill; none: not checked")
    fp8_columnwise_native: bool = Field(default=False, description="tensor cores read FP8 operands column-wise "
                                                                   "(Blackwell): no transposed FP8 copy")
    cpa_logic_kg_per_cm2: float | None = Field(default=None, gt=0, le=1e3, description="default from cpa.csv")
    cpa_hbm_kg_per_gb: float | None = Field(default=None, gt=0, le=1e3, description="default from cpa.csv")
    source: str = ""
    verification: str = ""
    catalog_row: str = Field(default="", description="row of data/hardware_modern.csv the values come from")
    cell_flags: dict[str, str] = Field(default_factory=dict, description="verification flag per field")
    aliases: tuple[str, ...] = ()
    years_ahead: float = Field(default=0.0, description="years the values were already projected (a record that "
                               "project() keeps, so a projected entry's JSON reads back as such; not applied: "
                               "project with --years-ahead)")

    @field_validator("formats", mode="before")
    @classmethod
    def _canonical_formats(cls, v):
        if isinstance(v, (list, tuple)):
            return tuple(canonical_precision(f, "formats") for f in v)
        return v

    @field_validator("cell_flags")
    @classmethod
    def _known_flags(cls, v: dict[str, str]) -> dict[str, str]:
        bad = {k: f for k, f in v.items() if f not in CELL_FLAGS}
        if bad:
            key = next(iter(bad))
            raise ValueError(f"cell_flags.{key} must be one of {', '.join(CELL_FLAGS)}, got {bad[key]!r}")
        return v

    @model_validator(mode="after")
    def _formats_have_rates(self) -> Device:
        for f in self.formats:
            if self._peak_tflops_of(number_format(f).peak) is None:
                raise ValueError(f"format {f} needs peak_tflops_{number_format(f).peak}")
        return self

    def _peak_tflops_of(self, peak_class: str) -> float | None:
        return {"bf16": self.peak_tflops, "fp8": self.peak_tflops_fp8, "fp4": self.peak_tflops_fp4}[peak_class]

    @property
    def supported_formats(self) -> tuple[str, ...]:
        """The precisions this device runs (explicit ``formats``, else by which peaks it has)."""
        if self.formats:
            return self.formats
        return ("bf16", "fp16") + (("fp8",) if self.peak_tflops_fp8 else ())

    @property
    def exp_per_s(self) -> float | None:
        """Exponentials per second on the special-function units, or None where not in the catalog.

        ``peak_tflops x sfu_ex2_per_clk_per_sm / mma_bf16_flop_per_clk_per_sm``: both rates are per
        SM and clock, so the catalog's BF16 peak carries the clock and the SM count.
        """
        if self.sfu_ex2_per_clk_per_sm is None or self.mma_bf16_flop_per_clk_per_sm is None:
            return None
        return 1e12 * self.peak_tflops * self.sfu_ex2_per_clk_per_sm / self.mma_bf16_flop_per_clk_per_sm

    def peak_flops(self, precision: str = "bf16") -> float:
        """Dense peak FLOP/s of the tensor cores in a number format.

        ``bf16``/``fp16`` read ``peak_tflops``; the FP8 recipes (``fp8``, ``fp8-delayed``,
        ``fp8-blockwise``, ``mxfp8``) ``peak_tflops_fp8``; ``nvfp4``/``mxfp4``
        ``peak_tflops_fp4``. A format the device does not run is an :class:`InputError`.
        """
        internal = number_format(precision).cast_free  # the papers' QAT: any device's 8-bit rate
        fmt = precision if internal else canonical_precision(precision)
        if not internal and fmt not in self.supported_formats:
            raise InputError("precision", f"{self.name} does not run {fmt} in the catalog "
                                          f"(it runs {', '.join(self.supported_formats)})")
        rate = self._peak_tflops_of(number_format(fmt).peak)
        if rate is None:
            raise InputError("precision", f"{self.name} has no 8-bit tensor-core rate in the catalog; use bf16")
        return 1e12 * rate

    def gemm_efficiency_max_for(self, precision: str) -> float | None:
        """Measured large-GEMM fraction of peak in a format (8/4-bit fall back to BF16's)."""
        if number_format(precision).quantized and self.gemm_efficiency_max_fp8 is not None:
            return self.gemm_efficiency_max_fp8
        return self.gemm_efficiency_max


class System(BaseModel):
    """A device in its node and network.

    Node and network fields have no defaults in code: a catalog entry or device file gives
    them, and the cited ``defaults.system`` block of hardware.yaml fills the host items.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    device: Device
    devices_per_node: int = Field(gt=0, le=10**4)
    scale_up_domain: int = Field(gt=0, le=10**7, description="devices on one NVLink/ICI fabric")
    torus_dims: int | None = Field(default=None, ge=1, le=6,
                                   description="TPU ICI torus dimensions (informational: the collective model "
                                               "treats a pod as one scale-up domain)")
    scale_out_gbit_s: float = Field(gt=0, le=1e7, description="NIC line rate per device, Gbit/s")
    node_other_power_w: float = Field(ge=0, le=1e7, description="node power beyond the accelerators, W")
    ref_system: str = Field(default="", description="the reference system these fields describe (e.g. DGX H100)")
    ref_system_max_power_w: float | None = Field(default=None, gt=0, le=1e8,
                                                 description="published maximum power of the reference system, W")
    network_power_w_per_device: float = Field(ge=0, le=1e5)
    cpus_per_node: float = Field(ge=0, le=1e3)
    cpu_die_area_mm2: float = Field(ge=0, le=1e5)
    dram_gb_per_node: float = Field(ge=0, le=1e7)
    ssd_gb_per_node: float = Field(ge=0, le=1e9)
    source: str = ""

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def scale_out_gb_s(self) -> float:
        """NIC bandwidth per device in GB/s, one direction."""
        return self.scale_out_gbit_s / 8.0


# ---- CPA ---------------------------------------------------------------------
def cpa_table() -> dict[tuple[str, str], float]:
    return {(r["component"], r["kind"]): float(r["cpa"]) for r in load_csv("cpa.csv") if r.get("component")}


def _cpa(component: str, kind: str, override: float | None, field: str) -> float:
    if override is not None:
        return override
    table = cpa_table()
    if (component, kind) not in table:
        raise UnknownNameError(field, kind, [k for c, k in table if c == component])
    return table[(component, kind)]


def logic_cpa(device: Device) -> float:
    """kgCO2e per cm^2 of logic die for the device's process node."""
    return _cpa("logic", device.process_node, device.cpa_logic_kg_per_cm2, "process_node")


def hbm_cpa(device: Device) -> float:
    """kgCO2e per GB of HBM for the device's HBM generation."""
    return _cpa("memory", device.hbm_type, device.cpa_hbm_kg_per_gb, "hbm_type")


# ---- catalog -----------------------------------------------------------------
CATALOG_FILES = ("hardware.yaml", "hardware_modern.yaml")


#: Per-device cells kept in their own sourced files and merged into the catalog entries:
#: (file, fields). Each device entry there has the fields, ``source`` and either ``flag`` (one
#: field) or ``flags`` (per field).
OVERLAY_FILES = (
    ("sfu.yaml", ("mma_bf16_flop_per_clk_per_sm", "sfu_ex2_per_clk_per_sm")),  # SFU vs tensor-core rates
    ("tf32.yaml", ("peak_tflops_tf32",)),  # TF32 tensor-core peaks (FP32 routers)
    ("host_link.yaml", ("host_link_gb_s",)),  # CPU-GPU link (activation offloading)
    ("host_memory.yaml", ("host_dram_gb",)),  # host memory per GPU (activation offloading)
)


@lru_cache(maxsize=1)
def _catalog() -> dict[str, dict]:
    """Every catalog entry: the papers' and older devices (hardware.yaml), then today's systems,
    with the cells of :data:`OVERLAY_FILES` merged in. Cached: callers copy before changing."""
    merged: dict[str, dict] = {}
    for name in CATALOG_FILES:
        merged.update(load_yaml(name)["devices"])
    for file, fields in OVERLAY_FILES:
        for name, cells in load_yaml(file)["devices"].items():
            entry = merged[name] = dict(merged[name])
            flags = cells.get("flags") or {f: cells["flag"] for f in fields}
            entry.update({f: cells[f] for f in fields})
            entry["cell_flags"] = {**entry.get("cell_flags", {}), **flags}
            entry["source"] = f"{entry.get('source', '')} | data/{file}: {cells['source']}".lstrip(" |")
            for f in (f for f in fields if flags.get(f) in UNVERIFIED_FLAGS):  # an assumption says what and why
                entry["verification"] = f"{entry.get('verification', '')}; {f}: {cells['source']}".lstrip("; ")
    return merged


def device_names() -> list[str]:
    return sorted(_catalog())


def _find(name: str) -> tuple[str, dict]:
    cat = _catalog()
    if name in cat:
        return name, cat[name]
    low = name.strip().lower()
    for key, entry in cat.items():
        if low == key.lower() or low in [a.lower() for a in entry.get("aliases", [])]:
            return key, entry
    raise UnknownNameError("device", name, cat)


def system_from_mapping(entry: dict, name: str | None = None, *, origin: str = "device") -> System:
    """Build a :class:`System` from a catalog-style mapping (device fields + ``system:`` block)."""
    if not isinstance(entry, dict):
        raise InputError(origin, f"must be a mapping of device fields, got "
                                 f"{'an empty file' if entry is None else type(entry).__name__}")
    entry = dict(entry)
    system_block = entry.pop("system", None) or {}
    if not isinstance(system_block, dict):
        raise InputError(f"{origin}.system", f"must be a mapping of system fields, got {type(system_block).__name__}")
    sys_fields = {**load_yaml("hardware.yaml")["defaults"]["system"], **system_block}
    if "aliases" in entry:
        if not isinstance(entry["aliases"], (list, tuple)):
            raise InputError(f"{origin}.aliases", "must be a list of names")
        entry["aliases"] = tuple(str(a) for a in entry["aliases"])
    entry.setdefault("name", name or "custom-device")
    try:
        device = Device(**entry)
    except ValidationError as err:
        raise from_validation(err, origin, known=Device.model_fields) from None
    try:
        system = System(device=device, **sys_fields)
    except ValidationError as err:
        raise from_validation(err, f"{origin}.system", known=System.model_fields) from None
    logic_cpa(device), hbm_cpa(device)  # fail early on unknown process / HBM type
    return system


def load_system(device: str | Path | dict | System) -> System:
    """A :class:`System` from a catalog name, a YAML file, a mapping (device fields plus a
    ``system:`` block), or a spec."""
    if isinstance(device, System):
        return device
    if isinstance(device, dict):
        return system_from_mapping(device)
    if isinstance(device, Path) or (isinstance(device, str) and device.endswith((".yaml", ".yml"))):
        return system_from_file(device)
    if not isinstance(device, str):
        raise InputError("device", f"expected a name, a YAML path or a mapping, got {type(device).__name__}")
    key, entry = _find(device)
    return system_from_mapping(entry, key)


def system_from_file(path: str | Path) -> System:
    """A :class:`System` from a YAML or JSON file of device fields plus a ``system:`` block.

    ``carbonscaling devices NAME --json`` writes exactly such a file; a one-element list
    (``devices --json`` filtered to one device) and a top-level ``device:`` key are accepted too.
    """
    p = Path(path)
    data = read_user_yaml(p, "device_file")
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    elif isinstance(data, list):  # the whole `devices --json` catalog
        raise InputError("device_file", f"holds a list of {len(data)} devices: give one "
                                        "(`carbonscaling devices NAME --json` writes one)")
    if isinstance(data, dict) and "device" in data and isinstance(data["device"], dict):
        data = data["device"]
    return system_from_mapping(data, p.stem, origin="device_file")


def example_device_file() -> str:
    """The text of the documented example device file shipped with the package."""
    from importlib import resources

    return (resources.files("carbonscaling") / "examples" / "device.yaml").read_text(encoding="utf-8")


# ---- projection ----------------------------------------------------------------
def scaling_rates() -> dict[tuple[str, str], float]:
    return {(r["component"], r["quantity"]): float(r["annual_rate"]) for r in load_csv("tech_scaling_rates.csv")}


def project(system: System, years_ahead: float = 0.0, *, cpa_growth_per_year: float = 0.0,
            scale_out_rate: float | None = None) -> System:
    """The system ``years_ahead`` years from now, compounding v1 Table 1's annual rates.

    Throughput x1.3/yr, SRAM x1.4, core power x1.03 (applied to TDP, as HBM power
    grows at the same rate), die area x1.05, HBM bandwidth x1.25, capacity x1.24,
    NVLink x1.11. Scale-out bandwidth follows NVLink's 1.11 unless ``scale_out_rate``
    overrides it. ``cpa_growth_per_year`` compounds logic and HBM CPA (v2's EUV
    case: 0.10). ``years_ahead = 0`` and no CPA growth returns the input unchanged.
    """
    for field, value, lo, hi in (("years_ahead", years_ahead, 0, 50), ("cpa_growth_per_year", cpa_growth_per_year, -0.5, 2)):
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or not lo <= value <= hi):
            raise InputError(field, f"must be a number in [{lo}, {hi}], got {value!r}")
    if years_ahead == 0 and cpa_growth_per_year == 0:
        return system
    r = scaling_rates()
    y = float(years_ahead)
    dev = system.device
    g = (1.0 + cpa_growth_per_year) ** y
    link = r[("nvlink", "bandwidth")] ** y
    out_rate = (scale_out_rate if scale_out_rate is not None else r[("nvlink", "bandwidth")]) ** y
    new_dev = dev.model_copy(update={
        "name": f"{dev.name}+{y:g}y" if y else f"{dev.name}+cpa",
        "peak_tflops": dev.peak_tflops * r[("core", "throughput")] ** y,
        "peak_tflops_fp8": dev.peak_tflops_fp8 * r[("core", "throughput")] ** y if dev.peak_tflops_fp8 else None,
        "peak_tflops_fp4": dev.peak_tflops_fp4 * r[("core", "throughput")] ** y if dev.peak_tflops_fp4 else None,
        "peak_tflops_tf32": dev.peak_tflops_tf32 * r[("core", "throughput")] ** y if dev.peak_tflops_tf32 else None,
        "sram_mb": dev.sram_mb * r[("core", "sram")] ** y,
        "tdp_w": dev.tdp_w * r[("core", "power")] ** y,
        "die_area_mm2": dev.die_area_mm2 * r[("core", "area")] ** y,
        "hbm_gb_s": dev.hbm_gb_s * r[("hbm", "bandwidth")] ** y,
        "hbm_gb": dev.hbm_gb * r[("hbm", "capacity")] ** y,
        "scale_up_gb_s": dev.scale_up_gb_s * link,
        "cpa_logic_kg_per_cm2": logic_cpa(dev) * g,
        "cpa_hbm_kg_per_gb": hbm_cpa(dev) * g,
        "years_ahead": dev.years_ahead + y,
    })
    return system.model_copy(update={"device": new_dev, "scale_out_gbit_s": system.scale_out_gbit_s * out_rate})


def describe(system: System) -> dict[str, Any]:
    """A system as a device-file mapping: every device field, and the node/network under ``system``.

    This is what ``carbonscaling devices --json`` prints, and it loads back unchanged
    through :func:`system_from_mapping` (``--device-file``).
    """
    rec = system.device.model_dump(mode="json")
    rec["system"] = system.model_dump(mode="json", exclude={"device"})
    return rec


def unverified_cells(system: System) -> dict[str, str]:
    """Catalog cells behind a system flagged ``unverified`` or ``assumed`` (field -> flag)."""
    return {k: v for k, v in system.device.cell_flags.items() if v in UNVERIFIED_FLAGS}
