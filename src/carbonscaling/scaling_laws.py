"""The scaling laws: final loss (Chinchilla, fine-grained MoE), the critical batch, preset rules.

Pure functions of numbers; their constants and the presets' architecture rules live in
``data/scaling_laws.yaml`` with their sources. :class:`carbonscaling.model_spec.ModelSpec`
applies them to one model.
"""

from __future__ import annotations

import math

from ._data import load_yaml
from .errors import UnknownNameError


def chinchilla_loss(n_params: float, tokens: float) -> float:
    """Chinchilla loss ``L(N, D) = E + A / N^alpha + B / D^beta``.

    Parameters
    ----------
    n_params : float
        Parameters N.
    tokens : float
        Training tokens D.

    Returns
    -------
    float
        Loss in nats/token (constants from ``scaling_laws.yaml``).

    References
    ----------
    Hoffmann et al., "Training Compute-Optimal Large Language Models", arXiv 2203.15556,
    2022 (approach 3 fit).
    """
    c = load_yaml("scaling_laws.yaml")["chinchilla"]
    return c["e"] + c["a"] / n_params ** c["alpha"] + c["b"] / tokens ** c["beta"]


def fine_grained_moe_loss(n_active_nonembedding: float, tokens: float, granularity: float = 1.0) -> float:
    """Fine-grained MoE loss ``L(N, D, G) = c + (g / G^gamma + a) / N^alpha + b / D^beta``.

    Parameters
    ----------
    n_active_nonembedding : float
        Active non-embedding parameters N.
    tokens : float
        Training tokens D.
    granularity : float, optional
        G, dense FFN width over one expert's width (default 1).

    Returns
    -------
    float
        Loss in nats/token (constants from ``scaling_laws.yaml``).

    References
    ----------
    Krajewski, Ludziejewski et al., "Scaling Laws for Fine-Grained Mixture of Experts",
    arXiv 2402.07871, 2024.
    """
    c = load_yaml("scaling_laws.yaml")["fine_grained_moe"]
    return (
        c["c"]
        + (c["g"] / granularity ** c["gamma"] + c["a"]) / n_active_nonembedding ** c["alpha"]
        + c["b"] / tokens ** c["beta"]
    )


def critical_batch_tokens(train_flops: float, n_experts: int, rule: dict, seq_len: int) -> float:
    """v1's critical batch: ``B = sqrt(E) (C / 3e23)^(1/6) 2048^2`` tokens, rounded to whole sequences.

    Parameters
    ----------
    train_flops : float
        Training FLOPs C.
    n_experts : int
        Routed experts E.
    rule : dict
        The preset's ``batch_ref_flops``, ``batch_exponent`` and ``batch_ref_tokens``.
    seq_len : int
        Tokens per sequence.

    Returns
    -------
    float
        Tokens (a whole number of sequences, at least one).

    References
    ----------
    Jiang and Chen, CarbonScaling v1, Sec. "Neural Scaling Laws"; Bi et al., "DeepSeek LLM", 2024.
    """
    raw = math.sqrt(n_experts) * (train_flops / rule["batch_ref_flops"]) ** rule["batch_exponent"]
    seqs = max(1, round(raw * rule["batch_ref_tokens"] / seq_len))
    return float(seqs * seq_len)


def preset_names() -> list[str]:
    """The scaling-law presets of ``scaling_laws.yaml``.

    Returns
    -------
    list of str
        Sorted names (``cs-v1``, ``cs-v1-aggressive-batch``, ``cs-v2``, ...).
    """
    return sorted(load_yaml("scaling_laws.yaml")["presets"])


def _preset_rules(preset: str) -> dict:
    presets = load_yaml("scaling_laws.yaml")["presets"]
    if preset not in presets:
        raise UnknownNameError("preset", preset, presets)
    rule = dict(presets[preset])
    if "base" in rule:
        rule = {**_preset_rules(rule["base"]), **rule}
    return rule
