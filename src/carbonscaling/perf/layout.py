"""Layouts (how a run is split over devices) and training options.

A :class:`Layout` is one concrete parallel configuration. A :class:`LayoutGrid`
holds many layouts as parallel numpy arrays so the step-time model evaluates
thousands at once. :class:`TrainingOptions` are the software choices that apply
to every layout of a run (precision, FlashAttention, overlap, the Fig. 9 knobs).

Device order is Megatron's: tensor-parallel ranks innermost, then expert, then
data, then pipeline (outermost). ``devices = tp * pp * dp * ep``: as in v1
Algorithm 1, expert parallelism multiplies the device count, and the tokens of
a step are split over the ``dp * ep`` ranks (attention is data-parallel across
expert ranks, experts are sharded across them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..formats import PRECISIONS, canonical_precision, number_format

RECOMPUTE_MODES = ("none", "selective", "full")
Recompute = Literal["none", "selective", "full"]


class TrainingOptions(BaseModel):
    """Software choices shared by every layout of a run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Descriptions are the CLI's help (carbonscaling.specs derives the options from them).
    precision: Literal[PRECISIONS] = Field(  # aliases (fp8-cs, FP8-MX, ...) normalised; see formats.yaml
        default="bf16", description="GEMM number format: bf16, fp16, fp8 (fp8-cs), fp8-delayed, fp8-blockwise, "
                                    "mxfp8 (fp8-mx), nvfp4, mxfp4; the device must run it.")
    flash_attention: bool = Field(default=True, description="Fused attention kernels.")
    sequence_parallel: bool = Field(default=True, description="Megatron sequence parallelism with TP.")
    overlap_grad_reduce: bool = Field(default=True, description="Overlap the data-parallel gradient reduction "
                                                                "with the backward pass.")
    overlap_tp_comm: bool = Field(default=False, description="Hide TP collectives under compute.")
    overlap_ep_comm: bool = Field(default=False, description="Hide the expert all-to-all under compute "
                                                             "(DeepSeek DualPipe).")
    capacity_factor: float = Field(default=1.0, ge=1.0, le=4.0, description="MoE expert capacity factor.")
    # v1 Fig. 9 / v2 Fig. 6b knobs (see docs/performance.md).
    dynamic_eviction: bool = Field(default=False, description="Coop-style allocator (less fragmentation).")
    flexible_sharding: bool = Field(default=False, description="LinS/hpZ-style ZeRO-3 within the node.")
    qat: bool = Field(default=False, description="Quantization-aware training: 8-bit compute, memory and "
                                                 "communication.")

    @field_validator("precision", mode="before")
    @classmethod
    def _canonical_precision(cls, v):
        if not isinstance(v, str):
            return v
        try:
            return canonical_precision(v)
        except ValueError as err:  # pydantic adds the field name itself
            raise ValueError(getattr(err, "message", str(err))) from None

    @property
    def gemm_precision(self) -> str:
        """The format the quantized GEMMs run in (QAT: the papers' 8-bit rate)."""
        if self.qat and not number_format(self.precision).quantized:
            return "fp8-qat"
        return "bf16" if self.precision == "fp16" else self.precision

    @property
    def activation_bytes(self) -> float:
        """Bytes of one activation element moved between devices (QAT sends 8-bit)."""
        return 1.0 if self.qat else 2.0

    @property
    def gemm_input_bytes(self) -> float:
        """Bytes per element of a quantized GEMM's operands as read from HBM (scales included)."""
        return number_format(self.gemm_precision).stored_bytes


class Layout(BaseModel):
    """One parallel configuration of a training step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: int = Field(ge=1)
    pp: int = Field(ge=1)
    dp: int = Field(ge=1)
    ep: int = Field(default=1, ge=1)
    zero: int = Field(default=0, ge=0, le=4, description="ZeRO stage; 4 = hierarchical ZeRO-3 (flexible sharding)")
    microbatch: int = Field(default=1, ge=1)
    interleave: int = Field(default=1, ge=1)
    recompute: Recompute = "none"
    global_batch_sequences: int = Field(ge=1)

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp * self.ep

    @property
    def microbatches(self) -> int:
        """Microbatches each pipeline runs per step (the last may be partial; counted whole)."""
        return -(-self.global_batch_sequences // (self.dp * self.ep * self.microbatch))


@dataclass(frozen=True)
class LayoutGrid:
    """Many layouts as equal-length int arrays (``rc``: 0 none, 1 selective, 2 full)."""

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray
    zero: np.ndarray
    mb: np.ndarray
    v: np.ndarray
    rc: np.ndarray
    batch: np.ndarray  # global batch in sequences

    @property
    def devices(self) -> np.ndarray:
        return self.tp * self.pp * self.dp * self.ep

    @property
    def micro(self) -> np.ndarray:
        return -(-self.batch // (self.dp * self.ep * self.mb))

    def __len__(self) -> int:
        return len(self.tp)

    def take(self, idx) -> LayoutGrid:
        return LayoutGrid(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    def layout(self, i: int) -> Layout:
        return Layout(
            tp=int(self.tp[i]), pp=int(self.pp[i]), dp=int(self.dp[i]), ep=int(self.ep[i]),
            zero=int(self.zero[i]), microbatch=int(self.mb[i]), interleave=int(self.v[i]),
            recompute=RECOMPUTE_MODES[int(self.rc[i])], global_batch_sequences=int(self.batch[i]),
        )

    @classmethod
    def from_layouts(cls, layouts: list[Layout]) -> LayoutGrid:
        def arr(f):
            return np.array([f(lay) for lay in layouts], dtype=np.int64)

        return cls(
            tp=arr(lambda x: x.tp), pp=arr(lambda x: x.pp), dp=arr(lambda x: x.dp), ep=arr(lambda x: x.ep),
            zero=arr(lambda x: x.zero), mb=arr(lambda x: x.microbatch), v=arr(lambda x: x.interleave),
            rc=arr(lambda x: RECOMPUTE_MODES.index(x.recompute)), batch=arr(lambda x: x.global_batch_sequences),
        )
