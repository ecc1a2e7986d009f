"""The pipeline's ends: the embedding on the first stage, the output layer with cross entropy
and the multi-token-prediction modules on the last (:func:`.step.stage_times` adds them).
"""

from __future__ import annotations

from ..formats import number_format
from . import kernels as K
from .constants import PerfConstants
from .layer import LayerTimes
from .layout import LayoutGrid, TrainingOptions


def ends_times(model, dev, g: LayoutGrid, o: TrainingOptions, c: PerfConstants, lt: LayerTimes):
    """Seconds of the embedding, the output layer with cross entropy, and the MTP modules for one
    microbatch (forward + backward).

    The embedding lookup is memory-bound; the output layer is a ``d_model -> vocab / TP`` GEMM
    in BF16 (today's recipes keep it there, ``formats.yaml recipe.bf16_gemms``; the papers'
    convention ran it in the GEMM format) followed by the cross entropy's passes over the
    logits (:func:`.kernels.cross_entropy_bytes` of the loss implementation).

    Parameters
    ----------
    model : ModelSpec
        The architecture (``vocab``, ``cross_entropy_fusion_impl``, ``mtp_layers``).
    dev : Device
        The device.
    g : LayoutGrid
        The layouts.
    o : TrainingOptions
        Precision and convention (``legacy``: the papers').
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    lt : LayerTimes
        Per-layer times (an MTP module runs one layer).

    Returns
    -------
    emb, head, mtp : numpy.ndarray
        Seconds per microbatch.
    """
    h, V = model.d_model, model.vocab
    tp = g.tp.astype(float)
    tokens = g.tokens(model.seq_len)
    emb = K.memory_bound_time(c.embedding_bytes_per_token_hidden * tokens * h, dev, c)
    # The output layer stays BF16 in today's recipes (formats.yaml recipe.bf16_gemms); v1 ran it in the GEMM format.
    h_prec, h_ib = (o.gemm_precision, o.gemm_input_bytes) if o.legacy \
        else ("bf16", number_format("bf16").element_bytes)
    lg_f, lg_b = K.linear_fwd_bwd_time(tokens, V / tp, h, 1, dev, c, h_prec, h_ib)
    ce_bytes = K.cross_entropy_bytes(model.cross_entropy_fusion_impl, c)[0]
    head = lg_f + lg_b + K.memory_bound_time(ce_bytes * tokens * V / tp, dev, c)
    mtp = model.mtp_layers * (lt.time0 + head) if o.legacy else mtp_time(model, dev, g, o, c, lt, emb, head)
    return emb, head, mtp


def mtp_time(model, dev, g, o, c, lt: LayerTimes, emb, head):
    """Seconds of a model's multi-token-prediction modules for one microbatch (forward + backward).

    Each Megatron-Core MTP layer (``MultiTokenPredictionLayer``) looks up the shifted tokens'
    embedding, normalizes it and the incoming hidden states, concatenates them, projects
    ``2 d_model -> d_model`` (``eh_proj``, a column-parallel linear in the GEMM format; its input
    is the concatenation, no norm-fused cast), runs one transformer layer -- the decoder's last
    layer spec, an MoE layer when every layer after the leading dense ones is MoE -- and its
    final norm, then the shared output layer and cross entropy (``head``).

    Parameters
    ----------
    model : ModelSpec
        ``mtp_layers`` and the architecture.
    dev : Device
        The device.
    g : LayoutGrid
        The layouts.
    o : TrainingOptions
        Precision and sequence parallelism.
    c : PerfConstants
        ``mtp_fwd_bytes_hidden`` (data/perf.yaml ``elementwise.mtp_forward_bytes_per_token_hidden``).
    lt : LayerTimes
        Per-layer times (the dense/MoE average and ``moe_minus_dense0``).
    emb, head : ndarray
        Seconds of an embedding lookup and of the output layer with cross entropy.

    Returns
    -------
    ndarray
        Seconds per microbatch (0 without MTP layers).

    References
    ----------
    NVIDIA Megatron-LM ``megatron/core/transformer/multi_token_prediction.py`` (@13f8f52).
    """
    if not model.mtp_layers:
        return 0.0 * lt.time0
    h = model.d_model
    tp = g.tp.astype(float)
    tokens = g.tokens(model.seq_len)
    sp = g.sp_shards(o.sequence_parallel)
    f_dense = model.n_dense_layers / model.n_layers if not model.is_hybrid else 0.0
    moe_spec = model.is_moe and not model.is_hybrid and model.moe_layer_every == 1
    layer = lt.time0 + (f_dense * lt.moe_minus_dense0 if moe_spec else 0.0)
    eh_f, eh_b = K.linear_fwd_bwd_time(tokens, h / tp, 2 * h, 1, dev, c, o.gemm_precision, o.gemm_input_bytes,
                                       norm_fused=False)
    elem = K.memory_bound_time(c.mtp_fwd_bytes_hidden * tokens * h / sp, dev, c) * (1.0 + c.elementwise_bwd_to_fwd)
    return model.mtp_layers * (layer + eh_f + eh_b + elem + emb + head)
