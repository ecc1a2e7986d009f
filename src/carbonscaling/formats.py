"""Number formats of a training step's GEMMs (``precision``) and what each costs.

A format names the tensor-core rate it runs at (``bf16``, ``fp8`` or ``fp4`` peak of the
device, see :meth:`carbonscaling.hardware.Device.peak_flops`), the bytes of an element and
of its scales, and the extra passes its recipe adds around each quantized GEMM (amax,
quantize, a second column-wise quantization for block-scaled formats, a Hadamard
transform for NVFP4's weight gradient). ``data/formats.yaml`` holds the values and their
sources; this module only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ._data import load_yaml
from .errors import InputError

#: Every precision a run can name (Megatron-Core / Transformer Engine recipes).
PRECISIONS = ("bf16", "fp16", "fp8", "fp8-delayed", "fp8-blockwise", "mxfp8", "nvfp4", "mxfp4")


@dataclass(frozen=True)
class NumberFormat:
    """One GEMM number format and its recipe costs (values from ``data/formats.yaml``)."""

    name: str
    peak: str                   # bf16 | fp8 | fp4: which device peak the GEMMs run at
    element_bytes: float        # bytes of one element
    block: int                  # elements sharing one scale (0: one scale per tensor)
    scale_bytes: float          # bytes of one block scale
    amax_passes: float          # extra reads of the BF16 input to find its amax first
    columnwise_requantize: bool  # the backward needs a second quantization along the other axis
    hadamard_wgrad: bool        # random Hadamard transform of the weight-gradient operands
    cast_free: bool = False     # the papers' QAT knob: 8-bit GEMMs, casts not modelled
    fused_copies: bool = False  # one kernel reads the BF16 tensor once and writes both copies
    norm_fused_cast: bool = False  # the preceding norm writes the quantized copies itself (no cast kernel)
    gemm_rate: float = 1.0      # GEMM kernel rate against a per-tensor-scaled GEMM at the same peak

    @property
    def quantized(self) -> bool:
        return self.peak != "bf16"

    @property
    def stored_bytes(self) -> float:
        """Bytes per element of one quantized copy, scales included."""
        return self.element_bytes + (self.scale_bytes / self.block if self.block else 0.0)

    def copies(self, columnwise_native: bool = False) -> int:
        """Quantized copies a tensor needs for its forward and backward GEMMs (row- and column-wise).

        One when the tensor cores read the row-wise copy column-wise (Blackwell, per-tensor
        scales); two otherwise (Hopper needs a transposed FP8 copy; block scales are directional).
        """
        return 1 if (columnwise_native and not self.columnwise_requantize) else 2

    def quantize_bytes(self, read_bytes: float = 2.0, columnwise_native: bool = False, weight: bool = False) -> float:
        """HBM bytes per element to turn a BF16 tensor into the copies its GEMMs need.

        Current scaling first reads the tensor for its amax (``amax_passes``; NVFP4 with the
        Hadamard transform takes the plain and the transformed amax in that one read). Then a
        cast reads it and writes a quantized copy (``stored_bytes``, scales included). Where the
        backward needs a second, column-wise copy (:meth:`copies`): where ``formats.yaml`` sets
        ``fused_copies`` (NVFP4's ``nvte_quantize_v2``) one kernel writes both copies from one
        read, except NVFP4's column-wise copy of an activation or gradient (``hadamard_wgrad``),
        which a separate Hadamard-transform-and-cast kernel makes from a second read. Otherwise a
        per-tensor copy is a transpose of the quantized data, a block-scaled one (block-wise FP8,
        MXFP8: directional scales) a second cast of the BF16 tensor.
        ``weight``: a weight's casts (no Hadamard transform: its copies come from one fused kernel).

        Parameters
        ----------
        read_bytes : float, optional
            Bytes of one input element (default 2.0, BF16).
        columnwise_native : bool, optional
            The tensor cores read per-tensor-scaled operands column-wise (Blackwell; default False).
        weight : bool, optional
            The tensor is a weight rather than an activation or a gradient (default False).

        Returns
        -------
        float
            Bytes read plus written per element (0 for BF16 and the cast-free QAT format).
        """
        if not self.quantized or self.cast_free:
            return 0.0
        first = (1.0 + self.amax_passes) * read_bytes + self.stored_bytes
        if self.copies(columnwise_native) == 1:
            return first
        if self.hadamard_wgrad and not weight:
            return first + read_bytes + self.stored_bytes
        if self.fused_copies:
            return first + self.stored_bytes
        if self.columnwise_requantize:
            return first + read_bytes + self.stored_bytes
        return first + 2.0 * self.stored_bytes


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    return load_yaml("formats.yaml")


@lru_cache(maxsize=None)
def _aliases() -> dict[str, str]:
    out = {}
    for name, entry in _table()["formats"].items():
        if entry.get("internal"):
            continue
        out[name] = name
        for alias in entry.get("aliases", []):
            out[str(alias).lower()] = name
    return out


def canonical_precision(value: str, field: str = "precision") -> str:
    """The canonical name of a precision (``FP8-CS`` -> ``fp8``, ``FP8-MX`` -> ``mxfp8``)."""
    if not isinstance(value, str):
        raise InputError(field, f"must be one of {', '.join(PRECISIONS)}, got {value!r}")
    key = value.strip().lower().replace("_", "-")
    names = _aliases()
    if key not in names:
        raise InputError(field, f"must be one of {', '.join(PRECISIONS)} (aliases: "
                                f"{', '.join(a for a, n in names.items() if a != n)}), got {value!r}")
    return names[key]


@lru_cache(maxsize=None)
def number_format(name: str) -> NumberFormat:
    """The :class:`NumberFormat` of a precision name or alias (or an internal format such as ``fp8-qat``)."""
    table = _table()["formats"]
    key = name if table.get(name, {}).get("internal") else canonical_precision(name)
    e = table[key]
    return NumberFormat(name=key, peak=e["peak"], element_bytes=float(e["element_bytes"]), block=int(e["block"]),
                        scale_bytes=float(e["scale_bytes"]), amax_passes=float(e["amax_passes"]),
                        columnwise_requantize=bool(e["columnwise_requantize"]),
                        hadamard_wgrad=bool(e["hadamard_wgrad"]), cast_free=bool(e.get("cast_free", False)),
                        fused_copies=bool(e.get("fused_copies", False)),
                        gemm_rate=float(e.get("gemm_rate_vs_tensorwise", {"value": 1.0})["value"]),
                        norm_fused_cast=key in _table()["recipe"]["norm_fused_casts"]["value"])


def recipe_value(key: str):
    """A value of the ``recipe:`` block of formats.yaml (which GEMMs are quantized, BF16 layers, copies)."""
    return _table()["recipe"][key]["value"]
