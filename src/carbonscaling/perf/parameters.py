"""Parameters per device: counts per layer, the data-parallel and sharding groups, bytes per weight.

The parameters a device holds (:func:`nonexpert_params_per_layer`, :func:`expert_params_per_layer`,
:func:`mtp_params`), the groups their weights, gradients and optimizer state are sharded over
(ZeRO, FSDP, hierarchical sharding; :func:`shard_groups`) and the bytes per linear weight in the
run's number format (:func:`linear_weight_bytes`). :mod:`.memory` adds them up per stage.
"""

from __future__ import annotations

import numpy as np

from ..formats import number_format, recipe_value
from ..hardware import System
from ..scaling import ModelSpec
from .constants import PerfConstants
from .layout import LayoutGrid, TrainingOptions


def nonexpert_params_per_layer(model: ModelSpec) -> float:
    """Attention, norms, the dense FFN (or the shared experts and router), averaged over layers.

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    float
        Parameters per layer (count, not bytes), before TP sharding.
    """
    frac_moe = model.n_moe_layers / model.n_layers
    moe_dense = model.shared_expert_params + model.router_params
    if model.is_hybrid:  # one block per layer (Mamba, attention, MoE or MLP), one norm each
        return (model.n_attention_layers * model.attn_params_per_layer + model.n_mamba_layers
                * model.mamba_params_per_layer + model.n_dense_layers * model.dense_ffn_params
                + model.n_moe_layers * moe_dense) / model.n_layers + model.d_model
    return model.attn_params_per_layer + (1 - frac_moe) * model.dense_ffn_params + frac_moe * moe_dense + 2 * model.d_model


def expert_params_per_layer(model: ModelSpec) -> float:
    """Routed-expert parameters per layer, averaged over all layers (dense layers count 0).

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    float
        Parameters per layer (count), before EP/ETP sharding.
    """
    return model.n_moe_layers / model.n_layers * model.n_experts * model.expert_params


def mtp_params(model: ModelSpec) -> float:
    """One MTP module: a layer, the 2h -> h projection and two norms (embedding/head shared).

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    float
        Parameters (count) of the model's ``mtp_layers`` multi-token-prediction modules.

    References
    ----------
    DeepSeek-AI, "DeepSeek-V3 Technical Report", 2024, Sec. 2.2 (multi-token prediction).
    """
    return model.mtp_layers * (nonexpert_params_per_layer(model) + expert_params_per_layer(model)
                               + 2 * model.d_model ** 2 + 2 * model.d_model)


def data_parallel_groups(g: LayoutGrid):
    """Sizes of the dense (DP x CP) and expert (TP CP DP / (ETP EP)) data-parallel groups.

    Parameters
    ----------
    g : LayoutGrid
        The layouts (arrays).

    Returns
    -------
    dense, expert : ndarray
        Ranks over which dense and expert gradients are reduced (Megatron-Core's
        data-parallel and expert-data-parallel groups).
    """
    return g.dp * g.cp, (g.tp * g.cp * g.dp) // (g.etp * g.ep)


def local_shards(g: LayoutGrid, system: System):
    """Data-parallel ranks of the dense and the expert groups inside one scale-up domain.

    Parameters
    ----------
    g : LayoutGrid
        The layouts (arrays).
    system : System
        ``scale_up_domain``: devices per NVLink/ICI domain.

    Returns
    -------
    dense, expert : ndarray
        Ranks per domain (the hierarchical ZeRO-3 sharding group, ``zero = 4``).
    """
    n_d, n_e = data_parallel_groups(g)
    dense = np.minimum(n_d, np.maximum(1, system.scale_up_domain // (g.tp * g.cp)))
    expert = np.minimum(n_e, np.maximum(1, system.scale_up_domain // (g.etp * g.ep)))
    return dense, expert


def shard_groups(g: LayoutGrid, system: System):
    """Ranks the (weights, grads, optimizer) of (dense, expert) parameters are sharded over.

    ZeRO-1 shards the optimizer state, ZeRO-2 also the gradients, ZeRO-3 and FSDP also the
    weights (over the FSDP group for hybrid sharding); ``zero = 4`` shards weights and
    gradients within the scale-up domain only (hpZ / flexible sharding).

    Parameters
    ----------
    g : LayoutGrid
        The layouts (arrays).
    system : System
        The scale-up domain size.

    Returns
    -------
    weights, grads, optimizer : tuple of (ndarray, ndarray)
        Each a ``(dense, expert)`` pair of sharding degrees (1 = replicated).

    References
    ----------
    Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
    Models", SC 2020; Wang et al., "ZeRO++", 2023 (hpZ).
    """
    n_d, n_e = data_parallel_groups(g)
    loc_d, loc_e = local_shards(g, system)
    fsdp = g.fsdp > 0
    # FSDP / hybrid sharding: the group of `fsdp` DP ranks (times CP); experts likewise.
    fs_d = np.where(fsdp, g.fsdp * g.cp, n_d)
    fs_e = np.where(fsdp, np.maximum(1, (n_e * g.fsdp) // g.dp), n_e)
    z = g.zero
    w = (np.where(z == 4, loc_d, np.where(z == 3, fs_d, 1)), np.where(z == 4, loc_e, np.where(z == 3, fs_e, 1)))
    gr = (np.where(z == 4, loc_d, np.where(z >= 2, fs_d, 1)), np.where(z == 4, loc_e, np.where(z >= 2, fs_e, 1)))
    op = (np.where(z >= 1, fs_d, 1), np.where(z >= 1, fs_e, 1))
    return w, gr, op


def linear_weight_bytes(o: TrainingOptions, c: PerfConstants, columnwise_native: bool = False) -> float:
    """Bytes per parameter of the layers' linear weights in the run's number format.

    BF16 (or the papers' 8-bit QAT): the weight itself. Quantized formats keep a row- and
    a column-wise quantized copy (formats.yaml ``recipe.fp8_weight_copies``); with
    ``fp8_param_gather`` (Megatron-Bridge's FP8 and MXFP8 recipes) those copies are the
    parameters, otherwise they come on top of the BF16 weight.

    Parameters
    ----------
    o : TrainingOptions
        The number format (``gemm_precision``) and activation element size.
    c : PerfConstants
        ``fp8_param_gather_formats``: formats whose quantized copies replace the BF16 weight.
    columnwise_native : bool, optional
        The tensor cores read a row-wise copy column-wise too (one copy fewer; default False).

    Returns
    -------
    float
        Bytes per parameter.
    """
    fmt = number_format(o.gemm_precision)
    if not fmt.quantized or fmt.cast_free:
        return o.activation_bytes
    # One copy where the tensor cores read it column-wise too (Blackwell, per-tensor FP8).
    n_copies = recipe_value("fp8_weight_copies") * fmt.copies(columnwise_native) / 2.0
    copies = n_copies * fmt.stored_bytes
    return copies if fmt.name in c.fp8_param_gather_formats else 2.0 + copies
