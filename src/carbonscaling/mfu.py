"""Model FLOPs per token under the MFU conventions in use (the numerator of MFU).

MFU = model FLOPs per second / (devices x peak); "model FLOPs" count what an ideal step
must compute, recompute excluded (Korthikanti et al. 2022). Frameworks and papers count
them differently; three named conventions (``TrainingOptions.mfu_convention``):

``megatron`` (the default; SPEC section 7)
    Megatron-LM's ``num_floating_point_operations`` (megatron/training/training.py,
    NVIDIA/Megatron-LM commit 001b00c): ``6 x`` the weights of every matmul one token
    passes through (Q/K/V/output projections, dense FFN, routed top-k and shared experts,
    Mamba-2 mixers, multi-token-prediction modules) **plus the output (logit) layer**
    ``d_model x vocab`` (counted even when tied to the input embedding, since that GEMM
    runs), **no input embedding** (a gather, no FLOPs), no norms, no router; and core
    attention ``6 s H (d_qk + d_v) / 2`` per layer: **causal attention counted as half**
    ("causal mask (only half of the mask is non-zero)"). Megatron's counter ignores
    sliding windows; we count the attended band as the step model executes it
    (:func:`~carbonscaling.perf.kernels.sliding_window_work_fraction`), as torchtitan's
    ``quadratic_attention_flops_per_token`` limits attended tokens to the window. Every
    term is work the step model executes, so MFU <= 1 holds physically.
``palm``
    PaLM Appendix B (Chowdhery et al. 2022) and torchtitan's ``get_num_flop_per_token`` /
    ``get_nparams_and_active_nparams`` (pytorch/torchtitan torchtitan/models/utils.py,
    commit 01c01c8): ``6 N + 12 L H Q T``, N = active parameters without the input
    embedding (a tied matrix counts once, as the output layer; norms and router count),
    attention counted in full ("we follow the convention and do not account for sparsity
    in causal attention"). PaLM's own 46.2 % follows only with N = 540.35B (its tied
    embedding included): 238.3k tokens/s x (6 x 540.35e9 + 12 x 118 x 48 x 256 x 2048) /
    (6144 x 275e12) = 0.462 (with the embedding removed: 0.458; causal half: 0.460).
    Narayanan et al. 2021 eq. 3 and BLOOM's Megatron-DeepSpeed counter use this form.
``cs-paper``
    The CarbonScaling papers' utilization ``U`` (SPEC section 3): ``6 N_active`` with every
    parameter (input embedding included) plus the full attention count
    (:attr:`ModelSpec.model_flops_per_token`). It counts the input embedding, which does
    no FLOPs, so it can exceed 1 for small-width, large-vocabulary models. The paper
    scenarios select it, so their utilization (and the paper power model it drives) is
    the papers'.

For tied-embedding models ``palm`` and ``cs-paper`` agree exactly.
"""

from __future__ import annotations

from typing import Literal

from .errors import InputError
from .scaling import ModelSpec

MFU_CONVENTIONS = ("megatron", "palm", "cs-paper")
MfuConvention = Literal["megatron", "palm", "cs-paper"]


def layer_matmul_weights(model: ModelSpec) -> float:
    """Weights (count) of the transformer layers' matmuls one token passes through.

    Attention projections, dense FFNs, the top-k routed and the shared experts of MoE
    layers and the Mamba-2 mixers; no norms, no router, no embeddings (Megatron-LM's count).
    """
    moe = model.top_k * model.expert_params + model.shared_expert_params
    return float(model.n_attention_layers * model.attn_params_per_layer
                 + model.n_dense_layers * model.dense_ffn_params + model.n_moe_layers * moe
                 + model.n_mamba_layers * model.mamba_params_per_layer)


def mtp_matmul_weights(model: ModelSpec) -> float:
    """Weights (count) of the multi-token-prediction modules' matmuls, logits excluded.

    Each module is one transformer layer (MoE when the model has MoE layers, as the last
    layer of DeepSeek-V3) plus the ``2 d x d`` projection of Megatron's MTP block.
    """
    if not model.mtp_layers:
        return 0.0
    ffn = (model.top_k * model.expert_params + model.shared_expert_params if model.is_moe
           else model.dense_ffn_params)
    return float(model.mtp_layers * (model.attn_params_per_layer + ffn + 2 * model.d_model ** 2))


def logit_weights(model: ModelSpec) -> float:
    """Weights (count) of the output layers: ``d_model x vocab`` for the model and each MTP module."""
    return float(model.d_model * model.vocab * (1 + model.mtp_layers))


def score_flops_per_token(model: ModelSpec, causal: bool = False) -> float:
    """Core attention (``Q K^T`` and ``softmax V``), forward + backward, per token (FLOPs).

    Full count ``6 L_attn s H (d_qk + d_v)`` (PaLM's ``12 L H Q T``); ``causal=True``
    halves it and limits windowed layers to their attended band.
    """
    full = 6.0 * model.n_attention_layers * model.seq_len * model.n_heads * (model.qk_head_dim
                                                                              + model.value_head_dim)
    if not causal:
        return full
    share = model.windowed_layer_share
    if share:
        from .perf.kernels import sliding_window_work_fraction

        band = float(sliding_window_work_fraction(model.seq_len, model.window_size))
        return 0.5 * full * (1.0 - share + share * band)
    return 0.5 * full


def ssd_flops_per_token(model: ModelSpec) -> float:
    """Mamba-2 SSD (state-space dual) cores of the model's Mamba layers, forward + backward, per token.

    The chunked SSD algorithm's matmuls per token and layer, forward (Dao & Gu 2024, Sec. 6;
    :func:`carbonscaling.perf.ssm.ssd_flops_per_token`): ``H (2 Q (N + P) + 4 N P)`` -- the
    intra-chunk scores ``C B^T`` and their product with ``x`` (``2 Q N + 2 Q P`` per head), the
    chunk states and their contribution to the output (``2 N P`` each) -- with ``H`` SSM heads of
    dimension ``P``, state size ``N`` and chunk length ``Q`` (``data/perf.yaml ssm.chunk``, the
    step model's). Backward is twice the forward (the ``3 x`` of every model-FLOP count). The
    in/out projections are matmul weights (:func:`layer_matmul_weights`), not counted here.

    Megatron-LM's ``num_floating_point_operations`` (``hybrid_flops``, ``mamba_layer_flops``)
    counts the scan as ``7 d_in N`` per token forward with ``d_in = 2 d_model``, marked there as
    an estimate to update for the SSD kernels; we count the SSD work the step model executes
    (:mod:`carbonscaling.perf.ssm`), as for sliding windows (module doc), so MFU stays physical.

    Parameters
    ----------
    model : ModelSpec
        The architecture: ``n_mamba_layers``, ``mamba_heads`` (H), ``mamba_head_dim`` (P),
        ``mamba_state`` (N).

    Returns
    -------
    float
        FLOPs per token, ``3 L_mamba H (2 Q (N + P) + 4 N P)``; 0 without Mamba layers.

    References
    ----------
    T. Dao and A. Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms
    Through Structured State Space Duality", ICML 2024 (arXiv 2405.21060), Sec. 6.
    Megatron-LM ``megatron/training/training.py`` ``num_floating_point_operations``
    (NVIDIA/Megatron-LM commit 001b00c; the same in Megatron-Bridge
    ``training/utils/flop_utils.py``).
    """
    if not model.n_mamba_layers:
        return 0.0
    from .perf.constants import default_constants
    from .perf.ssm import ssd_flops_per_token as ssd_forward_per_layer

    chunk = default_constants().ssm_chunk
    return 3.0 * model.n_mamba_layers * ssd_forward_per_layer(model.mamba_heads, model.mamba_head_dim,
                                                              model.mamba_state, chunk)


def megatron_flops_per_token(model: ModelSpec) -> float:
    """Model FLOPs per token as Megatron-LM counts them (see the module doc), FLOPs."""
    weights = layer_matmul_weights(model) + mtp_matmul_weights(model) + logit_weights(model)
    return 6.0 * weights + score_flops_per_token(model, causal=True) + ssd_flops_per_token(model)


def palm_flops_per_token(model: ModelSpec) -> float:
    """Model FLOPs per token as PaLM Appendix B and torchtitan count them (module doc), FLOPs."""
    input_embedding = 0 if model.tied_embeddings else model.vocab * model.d_model
    return 6.0 * (model.params_active - input_embedding) + model.attention_flops_per_token


def model_flops_per_token(model: ModelSpec, convention: str = "megatron") -> float:
    """Model FLOPs per token (MFU's numerator) under ``convention``, FLOPs.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    convention : {'megatron', 'palm', 'cs-paper'}
        See the module doc.

    Returns
    -------
    float
        FLOPs one trained token costs an ideal step (no recompute).
    """
    if convention == "megatron":
        return megatron_flops_per_token(model)
    if convention == "palm":
        return palm_flops_per_token(model)
    if convention == "cs-paper":
        return model.model_flops_per_token
    raise InputError("mfu_convention", f"must be one of {', '.join(MFU_CONVENTIONS)}, got {convention!r}")


def model_flops(model: ModelSpec, convention: str = "megatron") -> float:
    """Model FLOPs of the whole run (``model_flops_per_token x train_tokens``), FLOPs."""
    return model_flops_per_token(model, convention) * model.train_tokens
