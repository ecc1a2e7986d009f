"""Layouts (how a run is split over devices) and training options.

A :class:`Layout` is one concrete parallel configuration, named as Megatron-Core names
it. A :class:`LayoutGrid` holds many layouts as parallel numpy arrays so the step-time
model evaluates thousands at once. :class:`TrainingOptions` (:mod:`.options`, importable
from here too) are the software choices that apply to every layout of a run.

Megatron-Core semantics (``ep_convention='megatron'``, the default):
``devices = TP x CP x PP x DP``. Expert parallelism is carved out of the same devices:
the expert layers see the ``TP x CP x DP`` ranks of a pipeline stage as
``ETP x EP x EDP`` (expert tensor-, expert- and expert-data-parallel), so ``ETP x EP``
must divide ``TP x CP x DP`` and adds no device. ``ETP`` defaults to ``TP`` as in
``megatron.core.parallel_state.initialize_model_parallel``. The global batch (in
sequences) is split over the ``DP`` ranks; each ``CP`` rank holds ``1/CP`` of every
sequence. Rank order is Megatron's default ``tp-cp-ep-dp-pp`` (TP innermost, PP
outermost); the expert groups are ordered ``tp-ep-dp-pp`` (ETP innermost).

CarbonScaling v1's convention (``ep_convention='cs-v1'``, what the paper scenarios
select): EP multiplies the device count, ``devices = TP x PP x DP_v1 x EP``. It is the
Megatron layout with ``DP = DP_v1 x EP``, ``EP = E``, ``CP = 1``, ``ETP = TP``; the
search restricts itself to those (and to v1's pipeline and recompute rules), so a
``Layout`` always carries the Megatron sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from .options import (CUDA_GRAPH_SCOPES, EP_CONVENTIONS, MFU_CONVENTIONS, RECOMPUTE_MODULES,  # noqa: F401
                      TrainingOptions)

RECOMPUTE_MODES = ("none", "selective", "full")
Recompute = Literal["none", "selective", "full"]
RL_ALL = 1 << 30  # grid value of recompute_layers: every layer of a (virtual) stage
RL_AUTO = -1      # search-only grid value: the fewest recomputed layers that fit in memory


class Layout(BaseModel):
    """One parallel configuration of a training step (Megatron-Core names and semantics).

    ``vp`` is the number of virtual pipeline stages per device (Megatron's
    ``virtual_pipeline_model_parallel_size``; ``interleave`` is accepted as an alias).
    ``fsdp`` is the size of the FSDP sharding group over data-parallel ranks (0: off; equal
    to DP: fully sharded; smaller: hybrid sharding, replicated across groups); with FSDP
    the ZeRO stage is 3. ``recompute_layers``: under ``recompute='full'``, the layers of
    each (virtual) stage that are recomputed (Megatron's ``recompute_num_layers`` with the
    ``block`` method); ``None`` = all of them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    tp: int = Field(ge=1)
    pp: int = Field(ge=1)
    dp: int = Field(ge=1)
    cp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    etp: Optional[int] = Field(default=None, ge=1, description="expert tensor parallelism; default TP")
    zero: int = Field(default=0, ge=0, le=4, description="ZeRO stage; 4 = hierarchical ZeRO-3 (flexible sharding)")
    fsdp: int = Field(default=0, ge=0, description="FSDP sharding group (data-parallel ranks); 0 = off")
    microbatch: int = Field(default=1, ge=1)
    vp: int = Field(default=1, ge=1, validation_alias=AliasChoices("vp", "interleave"))
    recompute: Recompute = "none"
    recompute_layers: Optional[int] = Field(default=None, ge=0)
    global_batch_sequences: int = Field(ge=1)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data):
        if isinstance(data, dict) and data.get("etp") is None and data.get("tp") is not None:
            data = {**data, "etp": data["tp"]}
        return data

    @model_validator(mode="after")
    def _rules(self) -> Layout:
        if (self.tp * self.cp * self.dp) % (self.etp * self.ep):
            raise ValueError(f"etp x ep ({self.etp} x {self.ep}) must divide tp x cp x dp "
                             f"({self.tp} x {self.cp} x {self.dp}): experts are carved out of those ranks")
        if self.fsdp and self.dp % self.fsdp:
            raise ValueError(f"fsdp ({self.fsdp}) must divide dp ({self.dp})")
        if self.fsdp and self.zero not in (0, 3):
            raise ValueError(f"fsdp shards weights, gradients and optimizer state (ZeRO-3); got zero={self.zero}")
        if self.recompute != "full" and self.recompute_layers:
            raise ValueError("recompute_layers needs recompute='full'")
        return self

    @property
    def interleave(self) -> int:
        """Alias of ``vp`` (the papers' name)."""
        return self.vp

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage in effect (FSDP is ZeRO-3 over its group)."""
        return 3 if self.fsdp else self.zero

    @property
    def devices(self) -> int:
        """Devices the layout occupies: ``TP x CP x PP x DP`` (EP and ETP are carved out of them)."""
        return self.tp * self.cp * self.pp * self.dp

    @property
    def microbatches(self) -> int:
        """Microbatches each pipeline runs per step (the last may be partial; counted whole)."""
        return -(-self.global_batch_sequences // (self.dp * self.microbatch))

    def describe(self) -> str:
        """Megatron-style one-line summary.

        Returns
        -------
        str
            For example ``TP8 CP1 PP4 VP2 DP16 EP1 ZeRO-1 mb1 rc=selective`` (``ETPn`` only where
            it differs from TP; ``FSDPn`` in place of the ZeRO stage when FSDP is on).
        """
        parts = [f"TP{self.tp}", f"CP{self.cp}", f"PP{self.pp}", f"VP{self.vp}", f"DP{self.dp}", f"EP{self.ep}"]
        if self.etp != self.tp:
            parts.append(f"ETP{self.etp}")
        parts.append(f"FSDP{self.fsdp}" if self.fsdp else f"ZeRO-{self.zero}")
        rc = self.recompute
        if rc == "full" and self.recompute_layers is not None:
            rc = f"full({self.recompute_layers})"
        return " ".join(parts + [f"mb{self.microbatch}", f"rc={rc}"])


_GRID_FIELDS = ("tp", "pp", "dp", "cp", "ep", "etp", "zero", "fsdp", "mb", "v", "rc", "rl", "batch")


@dataclass(frozen=True)
class LayoutGrid:
    """Many layouts as equal-length int arrays.

    ``rc``: 0 none, 1 selective, 2 full; ``rl``: recomputed layers per (virtual) stage
    under full recompute (:data:`RL_ALL` = all; :data:`RL_AUTO`, search only: the fewest
    that fit). ``dp`` is Megatron's data parallelism (``devices = tp cp pp dp``).
    """

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray
    zero: np.ndarray
    mb: np.ndarray
    v: np.ndarray
    rc: np.ndarray
    batch: np.ndarray  # global batch in sequences
    cp: np.ndarray = None
    etp: np.ndarray = None
    fsdp: np.ndarray = None
    rl: np.ndarray = None

    def __post_init__(self):
        one = np.ones_like(self.tp)
        for name, default in (("cp", one), ("etp", self.tp), ("fsdp", 0 * one), ("rl", one * RL_ALL)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    @property
    def devices(self) -> np.ndarray:
        """Devices of each layout, ``tp x cp x pp x dp`` (int array)."""
        return self.tp * self.cp * self.pp * self.dp

    @property
    def micro(self) -> np.ndarray:
        """Microbatches per pipeline per step of each layout, ``ceil(batch / (dp x mb))`` (int array)."""
        return -(-self.batch // (self.dp * self.mb))

    def tokens(self, seq_len: int) -> np.ndarray:
        """Tokens of one microbatch on one rank after context parallelism, ``mb x seq_len / cp``.

        Parameters
        ----------
        seq_len : int
            Sequence length (tokens).

        Returns
        -------
        numpy.ndarray
            Tokens per layout (float).
        """
        return self.mb * seq_len / self.cp

    def sp_shards(self, sequence_parallel: bool) -> np.ndarray:
        """Ranks the sequence-parallel activations are split over (Megatron-Core ``sequence_parallel``).

        Parameters
        ----------
        sequence_parallel : bool
            Sequence parallelism on.

        Returns
        -------
        numpy.ndarray
            ``TP`` where sequence parallelism is on and ``TP > 1``, else 1 (float, per layout).
        """
        return np.where(sequence_parallel & (self.tp > 1), self.tp.astype(float), 1.0)

    def __len__(self) -> int:
        return len(self.tp)

    def take(self, idx) -> LayoutGrid:
        """The layouts at ``idx``.

        Parameters
        ----------
        idx : int array, bool mask or slice
            Numpy index into the grid.

        Returns
        -------
        LayoutGrid
            A grid of the selected layouts.
        """
        return LayoutGrid(**{k: getattr(self, k)[idx] for k in _GRID_FIELDS})

    def replace(self, **arrays) -> LayoutGrid:
        """A copy with some fields' arrays replaced.

        Parameters
        ----------
        **arrays : ndarray
            New arrays by grid field name (``tp``, ``pp``, ``dp``, ``cp``, ``ep``, ``etp``, ``zero``,
            ``fsdp``, ``mb``, ``v``, ``rc``, ``rl``, ``batch``), each as long as the grid.

        Returns
        -------
        LayoutGrid
            The copy.
        """
        return LayoutGrid(**{k: arrays.get(k, getattr(self, k)) for k in _GRID_FIELDS})

    def layout(self, i: int, recompute_layers: int | None = None) -> Layout:
        """The ``i``-th layout as a validated :class:`Layout`.

        Parameters
        ----------
        i : int
            Index into the grid.
        recompute_layers : int, optional
            Layers per (virtual) stage recomputed under full recompute, in place of the grid's
            ``rl`` (the search resolves :data:`RL_AUTO` this way).

        Returns
        -------
        Layout
            The layout (``recompute_layers`` None = every layer).
        """
        rc = RECOMPUTE_MODES[int(self.rc[i])]
        rl = int(self.rl[i]) if recompute_layers is None else int(recompute_layers)
        return Layout(
            tp=int(self.tp[i]), pp=int(self.pp[i]), dp=int(self.dp[i]), cp=int(self.cp[i]), ep=int(self.ep[i]),
            etp=int(self.etp[i]), zero=int(self.zero[i]), fsdp=int(self.fsdp[i]), microbatch=int(self.mb[i]),
            vp=int(self.v[i]), recompute=rc,
            recompute_layers=None if rc != "full" or rl >= RL_ALL or rl < 0 else rl,
            global_batch_sequences=int(self.batch[i]),
        )

    @classmethod
    def from_layouts(cls, layouts: list[Layout]) -> LayoutGrid:
        """A grid holding the given layouts, in order.

        Parameters
        ----------
        layouts : list of Layout
            Layouts to evaluate together.

        Returns
        -------
        LayoutGrid
            One entry per layout (``zero`` holds the stage in effect, 3 under FSDP).
        """
        def arr(f):
            return np.array([f(lay) for lay in layouts], dtype=np.int64)

        return cls(
            tp=arr(lambda x: x.tp), pp=arr(lambda x: x.pp), dp=arr(lambda x: x.dp), cp=arr(lambda x: x.cp),
            ep=arr(lambda x: x.ep), etp=arr(lambda x: x.etp), zero=arr(lambda x: x.zero_stage),
            fsdp=arr(lambda x: x.fsdp), mb=arr(lambda x: x.microbatch), v=arr(lambda x: x.vp),
            rc=arr(lambda x: RECOMPUTE_MODES.index(x.recompute)),
            rl=arr(lambda x: RL_ALL if x.recompute_layers is None else x.recompute_layers),
            batch=arr(lambda x: x.global_batch_sequences),
        )
