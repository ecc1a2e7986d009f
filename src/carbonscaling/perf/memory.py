"""Memory per device: weights, gradients, optimizer state, activations, fragmentation.

The peak over the pipeline stages of the parameters a device holds, sharded as the layout
says (:mod:`.parameters`), and the activations of the layers it runs (:mod:`.activations`,
Korthikanti et al. 2022), times the microbatches in flight: under 1F1B the first stage holds
``min(m, p)`` microbatches in flight (stage ``k`` holds ``min(m, p - k)``), times
``1 + (p - 1) / (p v)`` with interleaving (Narayanan et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from .activations import _mamba_activations, activation_bytes_per_layer, selective_freed_bytes  # noqa: F401
from .constants import PerfConstants
from .layout import RL_ALL, RL_AUTO, LayoutGrid, TrainingOptions
from .offload import kept_layers
from .parameters import (data_parallel_groups, expert_params_per_layer, linear_weight_bytes,  # noqa: F401
                         local_shards, mtp_params, nonexpert_params_per_layer, shard_groups)


@dataclass(frozen=True)
class Memory:
    params_dense: np.ndarray     # non-expert parameters on the first stage's device
    params_expert: np.ndarray    # expert parameters on that device
    optimizer_params: np.ndarray  # parameters whose optimizer step this device runs
    weights: np.ndarray          # bytes (incl. ZeRO-3 gather buffers and FP8 weight copies)
    grads: np.ndarray
    optimizer: np.ndarray
    activations: np.ndarray
    total: np.ndarray            # incl. fragmentation and reserved memory
    recompute_layers: np.ndarray  # recomputed layers per (virtual) stage under full recompute
    recomputed_first: np.ndarray  # layers recomputed on the first stage
    weight_shards: tuple = ()     # (dense, expert) ranks the weights are sharded over
    host_activations: object = 0.0  # bytes of offloaded activations in host memory (CPU offloading)


def _stage_params(model: ModelSpec, g: LayoutGrid, n, first, last):
    """(dense, expert) parameters on one device of a stage with ``n`` layers."""
    tp = g.tp.astype(float)
    emb = model.vocab * model.d_model / tp
    head = np.where(last, emb, 0.0)  # the output layer (tied embeddings keep a copy on the last stage too)
    head = np.where(first & last & model.tied_embeddings, 0.0, head)
    dense = n * nonexpert_params_per_layer(model) / tp + np.where(first, emb, 0.0) + head
    dense = dense + np.where(last, mtp_params(model) / tp, 0.0)
    expert = n * expert_params_per_layer(model) / (g.etp * g.ep)
    return dense, expert


def memory_per_device(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions,
                      c: PerfConstants, n_first, n_last, n_mid=None) -> Memory:
    """Peak memory over the first, second and last pipeline stage's devices.

    Grid rows with ``rl == RL_AUTO`` get the fewest recomputed layers per (virtual) stage
    that fit (``Memory.recompute_layers``); memory falls linearly with that number.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        The device (HBM capacity in GiB) and scale-up domain.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision, recompute-related and memory options (dynamic eviction).
    c : PerfConstants
        Bytes per optimizer state and gradient, fragmentation factor, reserved GB.
    n_first, n_last : float or ndarray
        Layers on the first and the last pipeline stage.
    n_mid : float or ndarray, optional
        Layers on the largest middle stage (default ``n_last``).

    Returns
    -------
    Memory
        Bytes per device at the peak stage (weights, grads, optimizer, activations, total
        including fragmentation and reserved memory) and the recomputed layers.

    References
    ----------
    Korthikanti et al. 2022 (activations); Narayanan et al., "Efficient Large-Scale
    Language Model Training on GPU Clusters Using Megatron-LM", SC 2021 (microbatches in
    flight under 1F1B and interleaving); Rajbhandari et al. 2020 (ZeRO).
    """
    n_mid = n_last if n_mid is None else n_mid
    shards = shard_groups(g, system)
    (w_d, w_e), _, (o_d, o_e) = shards
    kept, full, inp = activation_bytes_per_layer(model, g, o)
    logits = _logit_bytes(model, g, c)
    frag = c.fragmentation_factor_dynamic_eviction if o.dynamic_eviction else c.fragmentation_factor
    stages = _candidate_stages(model, g, o, n_first, n_mid, n_last)
    static = _static_bytes(model, system, g, o, c, stages, shards, logits)
    rl = _resolve_recompute_layers(g, static, full, inp, frag, c, system)
    rows = _stage_totals(system, g, o, c, stages, static, rl, (kept, full, inp), logits, frag)
    totals = np.stack([r[4] for r in rows])
    peak = np.argmax(totals, axis=0)

    def pick(k):
        return np.choose(peak, [r[k] for r in rows])

    return Memory(
        params_dense=static[0][0], params_expert=static[0][1],
        optimizer_params=np.max(np.stack([np.where(s[8], s[0] / o_d + s[1] / o_e, 0.0) for s in static]), axis=0),
        weights=pick(0), grads=pick(1), optimizer=pick(2), activations=pick(3), total=totals.max(axis=0),
        recompute_layers=np.where(g.rc == 2, rl, 0), recomputed_first=rows[0][5], weight_shards=(w_d, w_e),
        host_activations=_host_activation_bytes(system, g, o, kept, n_first),
    )


def _host_activation_bytes(system: System, g: LayoutGrid, o: TrainingOptions, kept, n_layers):
    """Bytes CPU offloading (PP 1, no recompute: one microbatch in flight) holds in host memory per GPU:
    the offloaded layers' activation sets (perf/offload.py; the HBM keeps the other ``L - N``)."""
    offloaded = o.cpu_offload_layers if system.device.host_link_gb_s is not None else 0  # search.check_offload
    if not offloaded:
        return 0.0
    on = (g.pp == 1) & (g.rc == 0)
    return np.where(on, np.minimum(offloaded, np.maximum(n_layers, 0)) * kept, 0.0)


def _logit_bytes(model: ModelSpec, g: LayoutGrid, c: PerfConstants):
    """Bytes of the logits the last stage keeps for the loss: FP32, or BF16 with TE's cross entropy
    (``cross_entropy_fusion_impl``), for the main head and each MTP head."""
    logit_b = K.cross_entropy_bytes(model.cross_entropy_fusion_impl, c)[1]
    return g.tokens(model.seq_len) * model.vocab / g.tp * logit_b * (1 + model.mtp_layers)


def _candidate_stages(model: ModelSpec, g: LayoutGrid, o: TrainingOptions, n_first, n_mid, n_last) -> list:
    """``(layers, first?, last?, microbatches in flight, exists?)`` of the stages that may hold the peak.

    Under 1F1B the first stage holds ``min(m, p)`` microbatches in flight, ``x (1 + (p - 1) / (p v))``
    with interleaving (Narayanan et al. 2021); the last holds one; a middle stage (``p > 2``) may
    hold more layers than the ends when the split is uneven.
    """
    pp = g.pp.astype(float)
    v = g.v.astype(float)
    m = g.micro.astype(float)
    is_pp1 = g.pp == 1
    one = np.ones_like(pp, dtype=bool)
    # Megatron-Core's EP overlap schedules one more warm-up forward chunk with interleaving
    # (get_pp_rank_microbatches); at PP 1 its paired forward allocates what the backward frees.
    ep_warmup = np.where((g.v > 1) & bool(o.overlap_ep_comm and not o.legacy) & model.is_moe, 1.0 / v, 0.0)
    stages = [
        (n_first, one, is_pp1, np.minimum(m, pp) * np.where(g.v > 1, 1.0 + (pp - 1) / (pp * v), 1.0) + ep_warmup,
         one),
        (n_last, ~one, one, np.ones_like(pp), ~is_pp1),
    ]
    if (g.pp > 2).any() and not o.legacy:  # a middle stage may hold more layers than the ends (uneven splits)
        stages.insert(1, (n_mid, ~one, ~one, np.minimum(m, np.maximum(pp - 1, 1))
                          * np.where(g.v > 1, 1.0 + (pp - 2) / (pp * v), 1.0) + ep_warmup, g.pp > 2))
    return stages


def _static_bytes(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants,
                  stages: list, shards, logits) -> list:
    """Per candidate stage: ``(dense params, expert params, weight, gradient and optimizer bytes, bytes
    that do not depend on recompute, layers, microbatches in flight, exists?)``. Weights include
    ZeRO-3's gather buffers; ``shards``: :func:`shard_groups`' ranks for weights, grads, optimizer."""
    grad_bytes = o.gradient_bytes(c)
    w_bytes = o.activation_bytes
    param_bytes = linear_weight_bytes(o, c, system.device.fp8_columnwise_native)
    (w_d, w_e), (g_d, g_e), (o_d, o_e) = shards
    sharded = g.zero >= 3
    layer_params = nonexpert_params_per_layer(model) / g.tp + expert_params_per_layer(model) / (g.etp * g.ep)
    gather_buffers = np.where(sharded & (w_d > 1), (2.0 * w_bytes + grad_bytes) * layer_params, 0.0)
    opt_b = c.optimizer_state_bytes_per_param
    static = []
    for n, first, last, inflight, exists in stages:
        p_d, p_e = _stage_params(model, g, n, first, last)
        # Embeddings and the output layer stay in BF16; the layers' linear weights follow the format.
        emb = p_d - n * nonexpert_params_per_layer(model) / g.tp
        weights = param_bytes * (p_d - emb) / w_d + w_bytes * emb / w_d + param_bytes * p_e / w_e + gather_buffers
        grads = grad_bytes * (p_d / g_d + p_e / g_e)
        opt = opt_b * (p_d / o_d + p_e / o_e)
        fixed = weights + grads + opt + np.where(last, logits, 0.0)
        static.append((p_d, p_e, weights, grads, opt, fixed, n, inflight, exists))
    return static


def _stage_totals(system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants, stages: list, static: list,
                  rl, activations, logits, frag) -> list:
    """Per candidate stage: ``(weights, grads, optimizer, activations, total, recomputed layers)`` bytes,
    the total with fragmentation and reserved memory (0 where the stage does not exist).
    ``activations``: ``(kept, full, input)`` bytes per layer (:func:`activation_bytes_per_layer`)."""
    kept, full, inp = activations
    v = g.v.astype(float)
    offloaded = o.cpu_offload_layers if system.device.host_link_gb_s is not None else 0  # search.check_offload
    rows = []
    for (p_d, p_e, weights, grads, opt, fixed, n, inflight, exists), stage in zip(static, stages):
        r = np.where(g.rc == 2, np.minimum(n, v * rl), 0.0)
        # CPU offloading (PP 1, no recompute) keeps L - N layers' activations in HBM (perf/offload.py)
        n = np.where(stage[1] & (g.pp == 1) & (g.rc == 0), kept_layers(n, offloaded), n)
        act = inflight * ((n - r) * np.where(g.rc == 2, full, kept) + r * inp) + np.where(r > 0, full, 0.0)
        act = act + np.where(stage[2], logits, 0.0)
        total = np.where(exists, (weights + grads + opt + act) * frag + c.reserved_gb * 1e9, 0.0)
        rows.append((weights, grads, opt, act, total, r))
    return rows


def _resolve_recompute_layers(g, static, full, inp, frag, c, system):
    """Per-chunk recomputed layers: the grid's, or for ``RL_AUTO`` the fewest that fit in HBM."""
    auto = (g.rc == 2) & (g.rl == RL_AUTO)
    rl = np.where(g.rl == RL_AUTO, RL_ALL, g.rl).astype(float)
    v = g.v.astype(float)
    most = np.ceil(np.max(np.stack([s[6] for s in static]), axis=0) / v)
    # A count above the largest chunk's layers recomputes that chunk whole (Megatron-Core's 'block'
    # method stops at the chunk's layers): record the chunk, not the pinned count (same memory and time).
    rl = np.where((rl < RL_ALL) & (most >= 1), np.minimum(rl, most), rl)
    if not auto.any():
        return rl
    cap = (system.device.hbm_gb * 2**30 - c.reserved_gb * 1e9) / frag
    need = np.ones_like(v)
    for p_d, p_e, weights, grads, opt, fixed, n, inflight, exists in static:
        # fixed + full + inflight (n full - r (full - inp)) <= cap, r = v rl
        excess = np.where(exists, fixed + full + inflight * n * full - cap, 0.0)
        per = inflight * np.maximum(full - inp, 1e-9) * v
        need = np.maximum(need, np.ceil(np.maximum(excess, 0.0) / per))
    need = np.where(need >= most, RL_ALL, need)
    return np.where(auto, need, rl)
