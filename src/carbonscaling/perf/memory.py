"""Memory per device: weights, gradients, optimizer state, activations, fragmentation.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in
Large Transformer Models", Table 2), generalised to any FFN width and gating:
per layer and microbatch ``s b h (R / sp + (S_attn + S_mlp + 5 a s / h) / t)`` bytes,
where ``R = 10`` is the part tensor parallelism replicates unless sequence
parallelism splits it (LayerNorm inputs 4, dropout masks 2, block inputs 4),
``S_attn = 8`` (Q, K, V, projection input), ``S_mlp = 4 d_ff / h`` (``6`` for gated
FFNs) and ``5 a s / h`` the score/softmax/dropout tensors, gone with selective
recompute or FlashAttention. Full recompute keeps only each layer's input.
Under 1F1B the first stage holds ``min(m, p)`` microbatches in flight, times
``1 + (p - 1) / (p v)`` with interleaving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import System
from ..scaling import ModelSpec
from .constants import PerfConstants
from .layout import LayoutGrid, TrainingOptions


@dataclass(frozen=True)
class Memory:
    params_dense: np.ndarray     # non-expert parameters on the heaviest stage's device
    params_expert: np.ndarray    # expert parameters on that device
    optimizer_params: np.ndarray  # parameters whose optimizer step this device runs
    weights: np.ndarray          # bytes
    grads: np.ndarray
    optimizer: np.ndarray
    activations: np.ndarray
    total: np.ndarray            # incl. fragmentation and reserved memory


def _nonexpert_params_per_layer(model: ModelSpec) -> float:
    frac_moe = model.n_moe_layers / model.n_layers
    moe_dense = model.n_shared_experts * model.expert_params + model.router_params
    return model.attn_params_per_layer + (1 - frac_moe) * model.dense_ffn_params + frac_moe * moe_dense + 2 * model.d_model


def _expert_params_per_layer(model: ModelSpec) -> float:
    return model.n_moe_layers / model.n_layers * model.n_experts * model.expert_params


def activation_bytes_per_layer(model: ModelSpec, g: LayoutGrid, o: TrainingOptions):
    """Bytes one layer keeps for one microbatch until its backward pass (per device)."""
    s, h = model.seq_len, model.d_model
    tp = g.tp.astype(float)
    sp_div = np.where(o.sequence_parallel & (g.tp > 1), tp, 1.0)
    sbh = s * g.mb * h
    per_ffn = 6.0 if model.ffn_gated else 4.0
    frac_moe = model.n_moe_layers / model.n_layers
    moe_width = (model.top_k * o.capacity_factor + model.n_shared_experts) * model.d_expert
    ffn_width = (1 - frac_moe) * model.d_ff + frac_moe * moe_width
    scores = 0.0 if o.flash_attention else 5.0 * model.n_heads * s / h
    scores = np.where(g.rc >= 1, 0.0, scores)
    scale = o.activation_bytes / 2.0  # Korthikanti counts 2-byte activations
    full_layer = sbh * scale * (10.0 / sp_div + (8.0 + per_ffn * ffn_width / h + scores) / tp)
    return np.where(g.rc == 2, 2.0 * sbh * scale / sp_div, full_layer), full_layer


def local_shards(g: LayoutGrid, system: System):
    """Data-parallel ranks of the dense and the expert groups inside one scale-up domain."""
    dense = np.minimum(g.dp * g.ep, np.maximum(1, system.scale_up_domain // g.tp))
    expert = np.minimum(g.dp, np.maximum(1, system.scale_up_domain // (g.tp * g.ep)))
    return dense, expert


def memory_per_device(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions,
                      c: PerfConstants, n_first, n_last) -> Memory:
    """Peak memory of the first (or, if larger, the last) pipeline stage's devices."""
    tp = g.tp.astype(float)
    ep = g.ep.astype(float)
    dp = g.dp.astype(float)
    v = g.v.astype(float)
    pp = g.pp.astype(float)
    m = g.micro.astype(float)
    emb = model.vocab * model.d_model / tp
    untied_extra = 0.0 if model.tied_embeddings else emb
    # First stage: its layers + input embedding (+ output layer when it is also the last).
    dense_first = n_first * _nonexpert_params_per_layer(model) / tp + emb + np.where(g.pp == 1, untied_extra, 0.0)
    dense_last = n_last * _nonexpert_params_per_layer(model) / tp + emb
    expert_first = n_first * _expert_params_per_layer(model) / (tp * ep)
    expert_last = n_last * _expert_params_per_layer(model) / (tp * ep)

    grad_bytes = c.grad_reduce_bytes_fp16 if o.precision == "fp16" else c.grad_reduce_bytes_bf16
    w_bytes = o.activation_bytes
    full_d, full_e = dp * ep, dp
    local_d, local_e = local_shards(g, system)
    sharded = g.zero >= 3  # ZeRO-3 (4: hierarchical, shards only inside the scale-up domain)
    w_d = np.where(g.zero == 4, local_d, np.where(sharded, full_d, 1))
    w_e = np.where(g.zero == 4, local_e, np.where(sharded, full_e, 1))
    g_d = np.where(g.zero == 4, local_d, np.where(g.zero >= 2, full_d, 1))
    g_e = np.where(g.zero == 4, local_e, np.where(g.zero >= 2, full_e, 1))
    o_d = np.where(g.zero >= 1, full_d, 1)
    o_e = np.where(g.zero >= 1, full_e, 1)
    # ZeRO-3 holds the gathered weights of the current and the prefetched layer, and one
    # layer's unsharded gradients before they are reduce-scattered.
    layer_params = (_nonexpert_params_per_layer(model) + _expert_params_per_layer(model) / ep) / tp
    gather_buffers = np.where(sharded & (w_d > 1), (2.0 * w_bytes + grad_bytes) * layer_params, 0.0)

    def states(p_d, p_e):
        weights = w_bytes * (p_d / w_d + p_e / w_e) + gather_buffers
        grads = grad_bytes * (p_d / g_d + p_e / g_e)
        return weights, grads, p_d / o_d + p_e / o_e

    w1, g1, op1 = states(dense_first, expert_first)
    w2, g2, op2 = states(dense_last, expert_last)

    per_layer, full_layer = activation_bytes_per_layer(model, g, o)
    inflight = np.minimum(m, pp) * np.where(g.v > 1, 1.0 + (pp - 1) / (pp * v), 1.0)
    recompute_buffer = np.where(g.rc == 2, full_layer, 0.0)  # one layer rebuilt at a time
    logits = g.mb * model.seq_len * model.vocab / tp * c.logits_bytes
    act1 = n_first * per_layer * inflight + recompute_buffer + np.where(g.pp == 1, logits, 0.0)
    act2 = n_last * per_layer + recompute_buffer + logits

    frag = c.fragmentation_factor_dynamic_eviction if o.dynamic_eviction else c.fragmentation_factor
    opt_b = c.optimizer_state_bytes_per_param
    total1 = (w1 + g1 + opt_b * op1 + act1) * frag + c.reserved_gb * 1e9
    total2 = np.where(g.pp > 1, (w2 + g2 + opt_b * op2 + act2) * frag + c.reserved_gb * 1e9, 0.0)
    first_is_peak = total1 >= total2

    def pick(a, b):
        return np.where(first_is_peak, a, b)

    return Memory(
        params_dense=dense_first,
        params_expert=expert_first,
        optimizer_params=np.maximum(op1, op2),
        weights=pick(w1, w2),
        grads=pick(g1, g2),
        optimizer=pick(opt_b * op1, opt_b * op2),
        activations=pick(act1, act2),
        total=np.maximum(total1, total2),
    )
