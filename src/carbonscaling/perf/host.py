"""Host (CPU) launch time of a layer run without CUDA graphs.

Without CUDA graphs the CPU launches every kernel of a layer one by one, each costing a fixed
host time (PyTorch's eager dispatch plus the CUDA driver's kernel submission,
``data/host.yaml: per_launch_s``, read with the other perf constants into
:class:`.constants.PerfConstants` ``host_per_launch_s``). The CPU runs ahead of the GPU only as
far as the GPU stays busy, so a layer's forward and backward on one microbatch take
``max(GPU time, launches x per-launch time)``. A dropless MoE token dispatcher blocks the host
once per MoE layer forward until the GPU has counted the tokens per expert: the GPU queue
drains and the GPU then waits for the next launch (one per-launch time per sync). Kernels
inside a CUDA graph (Megatron-Core ``cuda_graph_scope``) cost one launch per graph; a
full-iteration graph costs nothing per layer and has no syncs.

The kernel counts are per module of Megatron-Core's Transformer Engine layer spec, counted
from the code (``data/host.yaml`` says where); they are lower bounds (no quantize or amax
kernels, no Python-side module work). CarbonScaling v1's convention (``cs-v1``) has no host
term.
"""

from __future__ import annotations

import numpy as np

from .constants import PerfConstants, default_constants


def layer_launches(mixer, ffn, local_experts, tp, scope: tuple, c: PerfConstants | None = None):
    """Kernel launches the host issues for one layer and microbatch: ``(forward, backward)``.

    Parameters
    ----------
    mixer : {"attention", "mamba", None}
        The layer's token mixer.
    ffn : {"dense", "moe", None}
        The layer's feed-forward part.
    local_experts : float or ndarray
        Routed experts per expert-parallel rank (``n_experts / EP``).
    tp : ndarray
        Tensor parallelism (each TP block adds a sequence-parallel all-gather and reduce-scatter
        forward and backward).
    scope : tuple of str
        Megatron-Core ``cuda_graph_scope`` (``TrainingOptions.cuda_graph_scope``).
    c : PerfConstants, optional
        The ``host_launches_*`` counts (``data/host.yaml``; default: the shipped ones).

    Returns
    -------
    (ndarray, ndarray)
        Launches in the forward and in the backward pass.
    """
    c = c or default_constants()
    tp_coll = np.where(np.asarray(tp) > 1, 2.0, 0.0)
    f = b = 0.0 * tp_coll

    def part(counts, graphed):  # a graphed part costs one graph launch (none for an empty backward)
        return (1.0, float(counts[1] > 0)) if graphed else (float(counts[0]), float(counts[1]))

    parts = []
    if mixer == "attention":
        parts.append(part(c.host_launches_attention, "attn" in scope))
    elif mixer == "mamba":
        parts.append(part(c.host_launches_mamba, "mamba" in scope))
    if ffn == "dense":
        parts.append(part(c.host_launches_dense_mlp, "mlp" in scope))
    elif ffn == "moe":
        if "moe" in scope:
            parts.append((1.0, 1.0))
        else:
            parts.append(part(c.host_launches_moe_router, "moe_router" in scope))
            parts.append(part(c.host_launches_moe_preprocess, "moe_preprocess" in scope))
            per_f, per_b = c.host_launches_per_local_expert
            disp_f, disp_b = c.host_launches_moe_dispatch
            parts.append((disp_f + per_f * local_experts, disp_b + per_b * local_experts))
    for pf, pb in parts:
        f, b = f + pf, b + pb
    blocks = float(mixer is not None) + float(ffn is not None)
    return f + blocks * tp_coll, b + blocks * tp_coll


def host_syncs(ffn, ep_etp, scope: tuple, c: PerfConstants | None = None):
    """Host-device synchronisations per layer forward (dropless MoE dispatch with EP x ETP > 1).

    Parameters
    ----------
    ffn : {"dense", "moe", None}
        The layer's feed-forward part.
    ep_etp : ndarray
        ``EP x ETP`` of each layout (the dispatcher exchanges tokens when it exceeds 1).
    scope : tuple of str
        Megatron-Core ``cuda_graph_scope``; a graphed ``moe`` runs with static shapes (no sync).
    c : PerfConstants, optional
        ``host_syncs_per_moe_layer_forward`` (``data/host.yaml``; default: the shipped one).

    Returns
    -------
    ndarray
        Syncs per layer forward.
    """
    c = c or default_constants()
    on = (ffn == "moe") and "moe" not in scope
    return np.where(on & (np.asarray(ep_etp) > 1), float(c.host_syncs_per_moe_layer_forward), 0.0)


def host_bound_time(gpu_s, launches, syncs, per_launch_s):
    """Seconds of a region the host launches: ``max(GPU time, launches x per-launch) + syncs x per-launch``.

    Parameters
    ----------
    gpu_s : ndarray
        GPU time of the region (compute and exposed communication), seconds.
    launches : ndarray
        Kernel launches the host issues for it.
    syncs : ndarray
        Host-device synchronisations in it; each drains the GPU queue, which then idles until
        the host submits the next kernel.
    per_launch_s : float
        Host seconds per launch.

    Returns
    -------
    ndarray
        The region's time, seconds.
    """
    return np.maximum(gpu_s, launches * per_launch_s) + syncs * per_launch_s


def host_layer_excess(model, g, o, c: PerfConstants, mixer, ffn, time0, time1):
    """Host time a layer adds on top of its GPU time: ``(without recompute, extra when recomputed)``.

    Zero with a full-iteration graph and under the papers' ``cs-v1`` convention.

    Parameters
    ----------
    model : ModelSpec
        The architecture (``n_experts``).
    g : LayoutGrid
        The layouts (``tp``, ``ep``, ``etp``).
    o : TrainingOptions
        ``cuda_graph_scope``, ``moe_grouped_gemm``, the layout convention.
    c : PerfConstants
        The host constants (``host_*``, ``data/host.yaml``).
    mixer, ffn : str or None
        The layer's parts (:func:`layer_launches`).
    time0 : ndarray
        The layer's forward + backward GPU time on one microbatch (compute and exposed
        communication), seconds.
    time1 : ndarray
        The same with the forward run again (full recompute), which launches the forward's
        kernels and syncs again.

    Returns
    -------
    (ndarray, ndarray)
        Seconds added to ``time0``, and the further seconds a recomputed layer adds.
    """
    scope = o.cuda_graph_scope
    zero = 0.0 * np.asarray(time0)
    if o.legacy or "full_iteration" in scope:
        return zero, zero
    local = 0.0
    if ffn == "moe":  # a fused grouped MLP launches one kernel per GEMM, not one per local expert
        local = 1.0 if o.moe_grouped_gemm == "fused" else model.n_experts / np.asarray(g.ep, dtype=float)
    f, b = layer_launches(mixer, ffn, local, g.tp, scope, c)
    syncs = host_syncs(ffn, np.asarray(g.ep) * np.asarray(g.etp), scope, c)
    t = c.host_per_launch_s
    excess0 = host_bound_time(time0, f + b, syncs, t) - time0
    excess1 = host_bound_time(time1, 2.0 * f + b, 2.0 * syncs, t) - time1
    return excess0, excess1 - excess0
