"""The rules a :class:`~carbonscaling.model_spec.ModelSpec`'s fields obey, as pure functions.

* :func:`fill_defaults`: what a spec leaves out (heads, FFN width, KV heads, expert width,
  head dim) follows the cs-v1 architecture rules of ``data/scaling_laws.yaml``, and
  Megatron-Core's ``moe_d_ff`` is read as ``d_expert``;
* :func:`check_consistency`: the fields describe one buildable model (heads divide, top-k
  within the experts, a hybrid pattern as long as the stack, ...).

ModelSpec runs both as its validators (before and after pydantic's field checks).
"""

from __future__ import annotations

from typing import Any

from .scaling_laws import _preset_rules


def fill_defaults(data: Any) -> Any:
    """A ModelSpec's input mapping with the architecture defaults filled in.

    Parameters
    ----------
    data : dict or any
        The fields as given (a mapping; anything else is returned unchanged for pydantic to
        reject).

    Returns
    -------
    dict or any
        A new mapping: ``n_heads = d_model // head_dim`` and ``d_ff = d_ff_ratio x d_model``
        (cs-v1 rule of ``data/scaling_laws.yaml``), ``n_kv_heads = n_heads`` (MHA),
        ``d_expert`` from ``moe_d_ff`` (Megatron-Core's name) or ``d_ff``,
        ``head_dim = d_model // n_heads``; fields given are kept.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    d = data.get("d_model")
    if isinstance(d, int) and d > 0:
        rule = _preset_rules("cs-v1")  # defaults follow the scaling-law architecture rules
        if data.get("n_heads") is None:
            data["n_heads"] = max(1, d // rule["head_dim"])
        if data.get("d_ff") is None:
            data["d_ff"] = rule["d_ff_ratio"] * d
    if data.get("n_kv_heads") is None and data.get("n_heads") is not None:
        data["n_kv_heads"] = data["n_heads"]
    if "moe_d_ff" in data:  # Megatron-Core's name (moe_ffn_hidden_size) for one expert's width
        moe = data.pop("moe_d_ff")
        if data.get("d_expert") is None:
            data["d_expert"] = moe
    if data.get("d_expert") is None and data.get("d_ff") is not None:
        data["d_expert"] = data["d_ff"]
    if data.get("head_dim") is None and isinstance(d, int) and isinstance(data.get("n_heads"), int):
        data["head_dim"] = max(1, d // data["n_heads"])
    return data


def check_consistency(spec: Any) -> None:
    """Raise ``ValueError`` (one sentence naming the fields) if a spec's fields disagree.

    Parameters
    ----------
    spec : ModelSpec
        A spec whose fields passed their own range checks.

    Returns
    -------
    None
        Nothing; the first disagreement found raises ``ValueError``.
    """
    if spec.n_heads % spec.n_kv_heads:
        raise ValueError(f"n_kv_heads ({spec.n_kv_heads}) must divide n_heads ({spec.n_heads})")
    if spec.top_k > spec.n_experts:
        raise ValueError(f"top_k ({spec.top_k}) must be <= n_experts ({spec.n_experts})")
    if spec.first_dense_layers > spec.n_layers:
        raise ValueError("first_dense_layers must be <= n_layers")
    if spec.global_batch_tokens is not None and spec.global_batch_tokens < spec.seq_len:
        raise ValueError(f"global_batch_tokens must be >= seq_len ({spec.seq_len})")
    if spec.head_dim * spec.n_heads != spec.d_model and "head_dim" not in spec.model_fields_set:
        raise ValueError(f"n_heads ({spec.n_heads}) must divide d_model ({spec.d_model}), or give head_dim")
    if (spec.q_lora_rank or spec.qk_rope_head_dim) and not spec.is_mla:
        raise ValueError("q_lora_rank / qk_rope_head_dim need kv_lora_rank (multi-head latent attention)")
    if spec.is_moe and spec.n_moe_layers == 0:
        raise ValueError("n_experts > 1 but moe_layer_every / first_dense_layers leave no MoE layer")
    if spec.hybrid_pattern is not None:
        if len(spec.hybrid_pattern) != spec.n_layers:
            raise ValueError(f"hybrid_pattern has {len(spec.hybrid_pattern)} symbols, n_layers is {spec.n_layers}")
        if "E" in spec.hybrid_pattern and not spec.is_moe:
            raise ValueError("hybrid_pattern has MoE layers (E) but n_experts is 1")
        if "M" in spec.hybrid_pattern and None in (spec.mamba_heads, spec.mamba_head_dim, spec.mamba_state,
                                                   spec.mamba_groups):
            raise ValueError("hybrid_pattern has Mamba layers (M): give mamba_heads, mamba_head_dim, "
                             "mamba_state and mamba_groups")
