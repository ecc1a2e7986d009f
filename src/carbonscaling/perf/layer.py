"""One layer on one device: its sublayers' compute with its collectives, recompute and overlap.

:func:`layer_times` times one transformer layer (or one block of a hybrid stack) for one
microbatch: the sublayers' compute (:mod:`.sublayers`), the TP all-reduces, EP all-to-alls and CP
K/V ring sends (:func:`_collectives`) exposed after overlap (Megatron-Core's TP overlap, its
EP-overlap 1F1B node pairing, :mod:`.ep_overlap`, the CP ring under attention, :func:`cp_ring_exposed`), selective recompute
(:func:`.recompute.selective_recompute_time`), host launch time (:mod:`.host`) and what a fully recomputed
layer adds. :func:`per_layer` averages it over the model's dense, MoE and hybrid layers into a
:class:`LayerTimes`, what the pipeline stages (:mod:`.step`) are built from.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from ..formats import recipe_value
from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from .comm import p2p_time, ring_group
from .constants import PerfConstants
from .ep_overlap import combined_1f1b_layer_time
from .groups import group_rows
from .host import host_layer_excess
from .layout import LayoutGrid, TrainingOptions
from .moe_dispatch import dispatch_combine_bytes, dispatch_time
from .recompute import selective_recompute_time
from .sublayers import _attention, _busiest_rank, _ffn, _mamba, _routed_experts


@dataclass(frozen=True)
class LayerTimes:
    """One layer, one microbatch, one device: without full recompute (``*0``) and the extra
    a fully recomputed layer costs (``extra``), with exposed and overlapped communication."""

    time0: np.ndarray        # forward + backward + exposed TP/EP/CP communication
    extra: np.ndarray        # added when the layer is recomputed (forward again + its collectives)
    bwd0: np.ndarray         # backward compute (the window gradient reduction hides under)
    bwd_extra: np.ndarray
    compute0: np.ndarray     # compute only (for the breakdown)
    compute_extra: np.ndarray
    tp0: np.ndarray          # exposed TP, EP and CP communication without recompute
    ep0: np.ndarray
    cp0: np.ndarray
    tp_extra: np.ndarray     # ... and what a recomputed layer adds to each
    ep_extra: np.ndarray
    cp_extra: np.ndarray
    overlapped0: np.ndarray  # communication hidden under compute (slows it down a little)
    overlapped_extra: np.ndarray
    ep_hidden0: np.ndarray   # the EP all-to-alls overlap hid (unpaired microbatches expose them, step.evaluate)
    host0: np.ndarray = 0.0  # host launch time beyond the GPU's (no CUDA graphs; perf/host.py), in time0
    host_extra: np.ndarray = 0.0
    moe_minus_dense0: np.ndarray = 0.0  # an MoE layer's time0 less a dense layer's (the average hides it)


def _collectives(model, system, g, o, c, moe: bool, mixer: bool = True, ffn: bool = True, imbalance=None):
    """Per layer and microbatch, without recompute: TP all-reduce pairs, EP all-to-alls, CP sends.

    TP: 2 forward + 2 backward all-reduce equivalents, half after attention, half after the
    FFN (in MoE layers the expert half runs in the ETP group on the routed copies, as
    Megatron's token dispatcher does). EP: dispatch and combine, forward and backward.
    CP: the K/V ring, ``CP - 1`` sends of a K/V block forward and K/V plus their gradients backward.
    ``imbalance``: the busiest EP rank's load (:func:`.sublayers._busiest_rank`) when the caller has it.
    """
    s, h = model.seq_len, model.d_model
    tokens = g.tokens(s)
    act = tokens * h * o.activation_bytes
    tp_attn = ring_group(g.tp, 1, system, c).time("all_reduce", act)
    if moe:
        copies = model.top_k * o.capacity_factor
        tp_ffn = ring_group(g.etp, 1, system, c).time("all_reduce", act * copies * g.etp / g.tp)
        # random routing: the all-to-all ends when the busiest rank has received its copies
        payload, _ = dispatch_combine_bytes(tokens, model.top_k, h, g.tp, o.capacity_factor, o.activation_bytes)
        if not o.legacy:
            payload = payload * (_busiest_rank(model, g, o) if imbalance is None else imbalance)
        a2a = dispatch_time(payload, model.top_k, g.ep, g.etp, system, c,
                            dedup=o.moe_dispatcher == "flex" and not o.legacy, n_experts=model.n_experts)
    else:
        tp_ffn, a2a = tp_attn, 0.0 * tokens
    kv_heads = model.n_heads / g.tp if model.is_mla else np.maximum(model.n_kv_heads / g.tp, 1.0)
    kv_bytes = tokens * kv_heads * (model.qk_head_dim + model.value_head_dim) * o.activation_bytes
    send = np.where(g.cp > 1, p2p_time(kv_bytes, g.tp, g.cp, system, c), 0.0)
    if not (mixer and ffn):  # a hybrid stack's block has one sublayer (Mamba's out-projection reduces like attention's)
        return tp_attn * mixer + tp_ffn * ffn, a2a * ffn, send * mixer
    return tp_attn + tp_ffn, a2a, send


def _block_parts(model: ModelSpec, block: str | None, moe: bool):
    """(mixer, ffn) of a layer: ``attention``/``mamba``/None and ``dense``/``moe``/None.

    A transformer layer has both; a hybrid stack's block (Megatron ``hybrid_override_pattern``
    symbol ``M``, ``*``, ``E`` or ``-``) has one.
    """
    if block is None:
        return "attention", ("moe" if moe else "dense")
    return {"M": ("mamba", None), "*": ("attention", None), "E": (None, "moe"), "-": (None, "dense")}[block]


def layer_times(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants,
                moe: bool, block: str | None = None) -> LayerTimes:
    """One layer on one device: compute, and communication exposed after overlap.

    ``block``: one block of a hybrid stack (``M``, ``*``, ``E``, ``-``) instead of a full
    transformer layer; its norm and residual traffic is half a layer's.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision, overlap, attention and recompute options.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    moe : bool
        The layer's FFN is a mixture of experts.
    block : str, optional
        Hybrid block kind (Megatron-Core's ``hybrid_override_pattern`` characters).

    Returns
    -------
    LayerTimes
        Seconds per microbatch: forward + backward with exposed TP/EP/CP collectives, and
        what a fully recomputed layer adds.

    References
    ----------
    Narayanan et al., SC 2021 (TP collectives per layer); Korthikanti et al. 2022 (sequence
    parallelism, selective recompute).
    """
    mixer, ffn = _block_parts(model, block, moe)
    # the grouped GEMMs and the all-to-alls wait for the same busiest EP rank: its load, once per layer
    imb = _busiest_rank(model, g, o) if ffn == "moe" and not o.legacy else None
    lc = _layer_compute(model, system, g, o, c, mixer, ffn, imb)
    moe_redo = np.where((g.rc == 1) & (ffn == "moe") & ("moe" in o.selective_modules), 2.0, 0.0)
    tp_pair, a2a, send = _collectives(model, system, g, o, c, ffn == "moe", bool(mixer), bool(ffn), imb)
    cp_f, cp_b, cp_hidden_f, cp_hidden_b = cp_ring_exposed(send, lc.at_f, lc.at_b, g.cp)
    c0 = lc.fwd + lc.bwd + lc.sel
    tp0, tp_hidden0 = _tp_exposed(c0, 2.0 * tp_pair, o.overlap_tp_comm)
    c1 = c0 + lc.fwd
    tp1, tp_hidden1 = _tp_exposed(c1, 3.0 * tp_pair, o.overlap_tp_comm)
    a2a0 = (4.0 + moe_redo) * a2a  # a recomputed MoE dispatches again
    ep0, ep1, ep_hidden1 = _ep_exposed(model, system, g, o, c, ffn == "moe", lc, a2a, moe_redo,
                                       (c0, c1), (tp_hidden0, tp_hidden1))
    cp0 = cp_f + cp_b
    time0 = c0 + tp0 + ep0 + cp0
    time1 = c1 + tp1 + ep1 + cp0 + cp_f
    host0, host_x = host_layer_excess(model, g, o, c, mixer, ffn, time0, time1)
    time0, time1 = time0 + host0, time1 + host0 + host_x
    ov0 = tp_hidden0 + (a2a0 - ep0)
    ov1 = tp_hidden1 + ep_hidden1
    return LayerTimes(time0=time0, extra=time1 - time0, bwd0=lc.bwd, bwd_extra=lc.fwd, compute0=c0,
                      compute_extra=lc.fwd, tp0=tp0, ep0=ep0, cp0=cp0, tp_extra=tp1 - tp0, ep_extra=ep1 - ep0,
                      cp_extra=cp_f,
                      overlapped0=ov0 + cp_hidden_f + cp_hidden_b, overlapped_extra=ov1 - ov0 + cp_hidden_f,
                      ep_hidden0=a2a0 - ep0, host0=host0, host_extra=host_x)


class _LayerCompute(NamedTuple):
    """One layer's compute per microbatch (seconds) and the parts the EP overlap splits it into."""

    fwd: np.ndarray
    bwd: np.ndarray
    sel: np.ndarray          # selective recompute (0 where the layout does not recompute selectively)
    at_f: np.ndarray         # core attention forward / backward (what CP sends overlap)
    at_b: np.ndarray
    ff_f: np.ndarray         # FFN forward / backward
    ff_b: np.ndarray
    q_b: np.ndarray          # the mixer's projections' backward
    experts: tuple | None    # the routed experts' (fwd, data-gradient bwd, weight-gradient bwd)
    elem_f: np.ndarray       # element-wise passes, forward
    elem_hidden: np.ndarray  # their bytes per token: hidden-width and FFN-width tensors
    elem_ffn: np.ndarray


def _layer_compute(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants,
                   mixer: str | None, ffn: str | None, imbalance=None) -> _LayerCompute:
    """The sublayers' GEMMs and attention, the element-wise passes and selective recompute of one
    layer (or hybrid block: ``mixer``/``ffn`` from :func:`_block_parts`); its norm and residual
    traffic is half a layer's when the block has one sublayer. ``imbalance``: the busiest EP
    rank's load (:func:`.sublayers._busiest_rank`), computed once by :func:`layer_times`."""
    zero = 0.0 * g.tp
    q_f, q_b, at_f, at_b, sel = _attention(model, system, g, o, c) if mixer == "attention" else (zero,) * 5
    if mixer == "mamba":
        q_f, q_b = _mamba(model, system, g, o, c)
    experts = _routed_experts(model, system, g, o, c, imbalance) if ffn == "moe" else None  # the FFN's and EP overlap's
    ff_f, ff_b, ffn_width = _ffn(model, system, g, o, c, ffn == "moe", experts) if ffn else (zero, zero, 0.0)
    tokens = g.tokens(model.seq_len)
    sp = g.sp_shards(o.sequence_parallel)
    ffn_bytes = c.elementwise_fwd_bytes_ffn_gated if model.ffn_gated else c.elementwise_fwd_bytes_ffn
    hidden_share = 1.0 if (mixer and ffn) else 0.5
    elem_hidden = hidden_share * c.elementwise_fwd_bytes_hidden * model.d_model / sp
    elem_ffn = ffn_bytes * ffn_width
    elem_f = K.memory_bound_time(tokens * (elem_hidden + elem_ffn), system.device, c)
    fwd = q_f + at_f + ff_f + elem_f
    bwd = q_b + at_b + ff_b + c.elementwise_bwd_to_fwd * elem_f
    sel = sel * ("core_attn" in o.recompute_modules) + selective_recompute_time(model, system, g, o, c, mixer, ffn,
                                                                               ff_f)
    sel = np.where(g.rc == 1, sel, 0.0)
    return _LayerCompute(fwd, bwd, sel, at_f, at_b, ff_f, ff_b, q_b, experts, elem_f, elem_hidden, elem_ffn)


def cp_ring_exposed(send, at_f, at_b, cp):
    """Context-parallel K/V ring time exposed after overlap with attention, forward and backward.

    Each of the ``CP - 1`` sends of a K/V block overlaps one block of core attention
    (Megatron-Core / Transformer Engine p2p context parallelism); the backward sends K/V and
    their gradients (twice the bytes).

    Parameters
    ----------
    send : numpy.ndarray
        Seconds of one K/V block send (:func:`_collectives`).
    at_f, at_b : numpy.ndarray
        Core attention forward and backward seconds per microbatch.
    cp : numpy.ndarray
        Context-parallel size.

    Returns
    -------
    tuple of numpy.ndarray
        ``(exposed fwd, exposed bwd, hidden fwd, hidden bwd)`` seconds per microbatch.
    """
    steps = cp - 1.0
    cp_f = steps * np.maximum(0.0, send - at_f / np.maximum(steps, 1.0) * (steps > 0))
    cp_b = steps * np.maximum(0.0, 2.0 * send - at_b / np.maximum(steps, 1.0) * (steps > 0))
    return cp_f, cp_b, steps * send - cp_f, 2.0 * steps * send - cp_b


def _tp_exposed(compute, tpc, overlap: bool):
    """``(exposed, hidden)`` TP collectives: overlapped ones hide under the layer's own compute
    (Megatron TP overlap); without overlap all are exposed."""
    tp_x = np.maximum(0.0, tpc - compute) if overlap else tpc
    return tp_x, (tpc - tp_x)


def _ep_exposed(model, system, g, o, c, moe: bool, lc: _LayerCompute, a2a, moe_redo, compute, tp_hidden):
    """``(ep0, ep1, ep_hidden1)``: EP all-to-alls exposed without and with full recompute, and those
    hidden with it. ``compute``: the layer's ``(c0, c1)``; ``tp_hidden``: TP hidden in each."""
    c0, c1 = compute
    a2a0 = (4.0 + moe_redo) * a2a
    if o.overlap_ep_comm and moe and not o.legacy:
        # Megatron-Core pairs this layer's nodes with another microbatch's (perf/ep_overlap.py); a
        # recomputed MoE's dispatch and combine and a fully recomputed layer's run exposed
        # (recompute_model_chunk_schedule_plan: "The A2A communications issued here are exposed").
        parts = _overlap_parts(model, system, g, o, c, (lc.fwd, lc.bwd, lc.sel), (lc.ff_f, lc.ff_b, lc.q_b),
                               lc.experts, lc.elem_f, lc.elem_ffn / (lc.elem_hidden + lc.elem_ffn))
        ep0 = np.maximum(0.0, combined_1f1b_layer_time(*parts, a2a) - c0) + moe_redo * a2a
        return ep0, ep0 + 2.0 * a2a, a2a0 - ep0
    if o.overlap_ep_comm and moe:
        # cs-v1 (the papers' convention): the all-to-alls hide under what the layer's own compute
        # leaves after the hidden TP collectives (DualPipe-style), as v1's model had it
        ep0 = np.maximum(0.0, a2a0 - np.maximum(0.0, c0 - tp_hidden[0]))
        ep1 = np.maximum(0.0, 6.0 * a2a - np.maximum(0.0, c1 - tp_hidden[1]))
        return ep0, ep1, 6.0 * a2a - ep1
    return a2a0, 6.0 * a2a, 0.0 * a2a0


def _overlap_parts(model, system, g, o, c, layer, ffn_parts, experts, elem_f, elem_ffn_share):
    """One MoE layer's compute split into Megatron-Core's EP-overlap nodes (perf/ep_overlap.py):
    ``(attn_f, mlp_f, attn_b, attn_dw, mlp_b, mlp_dw)`` seconds per microbatch, summing to the
    layer's ``fwd + bwd + sel``. The ``mlp`` node is the routed experts with their activation's
    element-wise passes and the recompute of the MoE side (``selective_recompute_time`` without
    the mixer); everything else -- attention, norms, router, shared experts -- is the ``attn``
    node, whose GEMMs' weight gradients (half their backward) run after its data gradients.
    ``layer``: ``(fwd, bwd, sel)``; ``ffn_parts``: ``(ffn fwd, ffn bwd, attention projections' bwd)``;
    ``experts``: the routed experts' ``(fwd, data-gradient bwd, weight-gradient bwd)`` (:func:`_routed_experts`);
    ``elem_ffn_share``: the FFN-width share of the layer's element-wise traffic ``elem_f``."""
    fwd, bwd, sel = layer
    ff_f, ff_b, q_b = ffn_parts
    e_f, e_bd, e_bw = experts
    elem_mlp = elem_f * elem_ffn_share
    sel_mlp = np.where(g.rc == 1, selective_recompute_time(model, system, g, o, c, None, "moe", ff_f), 0.0)
    mlp_f = e_f + elem_mlp
    mlp_b = e_bd + c.elementwise_bwd_to_fwd * elem_mlp + sel_mlp
    attn_dw = 0.5 * (q_b + ff_b - e_bd - e_bw)  # projections, router and shared experts
    attn_f = fwd - mlp_f
    attn_b = bwd + sel - mlp_b - e_bw - attn_dw
    return attn_f, mlp_f, attn_b, attn_dw, mlp_b, e_bw


def per_layer(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants) -> LayerTimes:
    """:func:`layer_times` averaged over dense and MoE (or hybrid) layers, for every layout of ``g``.

    The share of layers a recipe keeps in BF16 (NVFP4: the first and last blocks,
    ``formats.yaml: recipe.bf16_layers_nvfp4``) is timed in BF16.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision, overlap, attention and recompute options.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).

    Returns
    -------
    LayerTimes
        Seconds per layer and microbatch, one entry per layout.
    """
    share = recipe_value("bf16_layers_nvfp4") if o.gemm_precision == "nvfp4" else 0.0
    lt = _per_layer(model, system, g, o, c)
    if not share:
        return lt
    lb = _per_layer(model, system, g, o.model_copy(update={"precision": "bf16"}), c)
    return LayerTimes(**{f.name: (1.0 - share) * getattr(lt, f.name) + share * getattr(lb, f.name)
                         for f in fields(LayerTimes)})


def _per_layer(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants) -> LayerTimes:
    """:func:`layer_times` averaged over dense and MoE layers, for every layout of ``g``.

    Layer times depend only on (TP, CP, EP, ETP, microbatch, selective recompute), which a
    search grid repeats thousands of times: each distinct combination is computed once.
    """
    first, inverse = group_rows(g.tp, g.cp, g.ep, g.etp, g.mb, (g.rc == 1).astype(np.int64))
    sub = g.take(first)
    frac_moe = model.n_moe_layers / model.n_layers
    if model.is_hybrid:  # one block per layer: average over the pattern's block kinds
        parts = [(model.hybrid_pattern.count(b) / model.n_layers, layer_times(model, system, sub, o, c, b == "E", b))
                 for b in "M*E-" if b in model.hybrid_pattern]
    else:
        parts = [(1.0 - frac_moe, layer_times(model, system, sub, o, c, moe=False))]
        if frac_moe > 0:
            parts.append((frac_moe, layer_times(model, system, sub, o, c, moe=True)))
    out = {}
    for f in fields(LayerTimes):
        avg = sum(w * np.broadcast_to(getattr(p, f.name), first.shape) for w, p in parts)
        out[f.name] = avg[inverse]
    if not model.is_hybrid and len(parts) == 2:  # where on the pipeline the dense layers sit matters (step.py)
        out["moe_minus_dense0"] = np.broadcast_to(parts[1][1].time0 - parts[0][1].time0, first.shape)[inverse]
    return LayerTimes(**out)
