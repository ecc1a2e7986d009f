"""Megatron-Core's expert-parallel all-to-all overlap: what hides under what.

With ``overlap_moe_expert_parallel_comm`` (Megatron-Bridge ``moe_a2a_overlap``) Megatron-Core
runs one microbatch's forward and another microbatch's backward together, layer by layer
(``combined_1f1b.py``, ``TransformerLayerSchedulePlan.run`` in
``models/common/model_chunk_schedule_plan.py``). Each MoE layer is split into nodes
(``models/gpt/fine_grained_callables.py``): ``attn`` (attention, pre-MLP norm, shared experts,
router, dispatch preprocessing), ``moe_dispatch``, ``mlp`` (the routed experts) and
``moe_combine``. The all-to-alls run on a communication stream, the rest on the compute stream,
and each microbatch's nodes wait on their own chain's event (``stream_acquire_context``), so::

    comm stream:    combine_bwd | dispatch_fwd | dispatch_bwd        | combine_fwd
    compute stream: attn_fwd    | mlp_bwd      | mlp_wgrad, mlp_fwd  | attn_bwd, attn_wgrad

An all-to-all hides only under the *other* microbatch's node it is paired with; whatever
exceeds that node stays exposed. Megatron-Bridge turns ``delay_wgrad_compute`` on with the
overlap (``set_moe_a2a_overlap_overrides``), so the expert weight gradients run after the
expert data gradients, under the backward dispatch. :func:`combined_1f1b_layer_time` walks this
two-stream graph; :func:`ep_overlap_ramp_time` charges the microbatches that run unpaired.
"""

from __future__ import annotations

import numpy as np


def combined_1f1b_layer_time(attn_f, mlp_f, attn_b, attn_dw, mlp_b, mlp_dw, a2a, layers: int = 4):
    """Seconds per layer of one forward and one backward run together (steady state).

    The compute stream runs ``attn_f, mlp_b, mlp_dw, mlp_f, attn_b, attn_dw`` of each layer in
    that order; the communication stream ``combine_b, dispatch_f, dispatch_b, combine_f``, each
    ``a2a`` long. Forward chain: ``attn_f -> dispatch_f -> mlp_f -> combine_f`` -> next layer's
    ``attn_f``; backward chain: ``combine_b -> mlp_b -> dispatch_b -> attn_b`` -> the next
    (earlier) layer's ``combine_b``. Every node starts when its stream is free and its chain's
    previous node is done. ``layers`` identical layers are walked and the last layer's increment
    returned (the max-plus recurrence settles after the first).

    Parameters
    ----------
    attn_f, mlp_f : ndarray
        Forward compute of the attention node and of the expert node (s).
    attn_b, attn_dw : ndarray
        Backward of the attention node: data gradients (and recompute), then weight gradients (s).
    mlp_b, mlp_dw : ndarray
        Backward of the expert node: data gradients (and recompute), then the delayed weight
        gradients (s).
    a2a : ndarray
        One dispatch or combine all-to-all (s).
    layers : int, optional
        Layers walked (default 4).

    Returns
    -------
    ndarray
        Seconds per layer; at least the compute's sum and at least ``4 a2a``.

    References
    ----------
    Megatron-Core ``TransformerLayerSchedulePlan.run`` (model_chunk_schedule_plan.py),
    ``ScheduleNode`` (pipeline_parallel/utils.py), ``combined_1f1b.py``.
    """
    zero = 0.0 * np.asarray(a2a, dtype=float)
    comp = comm = b_ready = f_ready = zero
    prev = zero
    for _ in range(layers):
        cb = np.maximum(comm, b_ready) + a2a                  # combine backward
        af = np.maximum(comp, f_ready) + attn_f               # attention forward
        mb = np.maximum(af, cb) + mlp_b                       # expert data gradients
        mdw = mb + mlp_dw                                     # expert weight gradients (delayed)
        df = np.maximum(cb, af) + a2a                         # dispatch forward
        db = np.maximum(df, mb) + a2a                         # dispatch backward
        mf = np.maximum(mdw, df) + mlp_f                      # experts forward
        cf = np.maximum(db, mf) + a2a                         # combine forward
        ab = np.maximum(mf, db) + attn_b                      # attention backward
        comp, comm, b_ready, f_ready = ab + attn_dw, cf, ab, cf
        end = np.maximum(comp, comm)
        step, prev = end - prev, end
    return step


def ep_overlap_ramp_time(pp, overlap: bool, n_stage_layers, ep_hidden):
    """EP all-to-all the overlap cannot hide because a microbatch runs unpaired (s per step).

    ``combined_1f1b_schedule_for_no_pipelining`` (PP 1) runs the first forward and the last
    backward alone. With pipelining (Megatron-Core requires interleaving, VP > 1) the warm-up
    forwards and cool-down backwards run alone too (``get_pp_rank_microbatches``:
    ``(PP - rank - 1) * 2 + (VP - 1) * PP`` chunks, one more with the overlap). On the critical
    path -- the first microbatch down the pipeline, the last stage's own unpaired
    ``(VP - 1) PP + 1`` chunks, the last microbatch back up -- that is ``VP x PP`` chunk
    forwards and backwards, i.e. ``PP x`` a stage's layers each exposing the all-to-all time the
    steady state hid: ``PP x n_stage_layers x ep_hidden``.

    Parameters
    ----------
    pp : ndarray
        Pipeline stages.
    overlap : bool
        ``overlap_ep_comm``.
    n_stage_layers : ndarray
        Layers on a stage (the first stage's, all its virtual chunks).
    ep_hidden : ndarray
        All-to-all time per layer and microbatch the paired steady state hides
        (``LayerTimes.ep_hidden0``).

    Returns
    -------
    ndarray
        Seconds per step.
    """
    if not overlap:
        return 0.0 * np.asarray(ep_hidden, dtype=float)
    return np.asarray(pp, dtype=float) * n_stage_layers * ep_hidden


def ep_overlap_slowdown(hidden_s, compute_units, comm_sms):
    """Compute slowed by the dispatch/combine kernels it overlaps with (s).

    DeepEP's and HybridEP's kernels occupy ``comm_sms`` SMs for the whole all-to-all (Megatron-Core
    ``moe_deepep_num_sms``, default 20); the paired node's kernels get the other
    ``compute_units - comm_sms``, so work that would take ``hidden_s`` on the full device takes
    ``compute_units / (compute_units - comm_sms)`` times as long.

    Parameters
    ----------
    hidden_s : ndarray
        All-to-all time hidden under compute (s).
    compute_units : int
        The device's SMs.
    comm_sms : int
        SMs the communication kernels take.

    Returns
    -------
    ndarray
        Seconds added to the compute.
    """
    return np.asarray(hidden_s, dtype=float) * comm_sms / max(compute_units - comm_sms, 1)
