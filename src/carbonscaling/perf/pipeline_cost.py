"""Cost-balanced pipeline layouts: the search's split when custom layouts are allowed.

Counting the embedding and the loss as one decoder layer each (Megatron's
``account_for_*_in_pipeline_split``, :func:`.pipeline.stage_split`) leaves the last rank
overloaded when the output layer is heavy: a 201k-token vocabulary over ``d_model`` 2880
(gpt-oss) costs about four decoder layers, and DeepSeek-V3's MTP module (a whole MoE layer
plus a second output layer) sits there too. With ``pipeline_model_parallel_layout``
(Megatron-Core >= 0.13) any layers per chunk can be asked for, so the search offers the
split whose heaviest rank is lightest when the ends are weighed by what they compute
(:func:`stage_cost_weights`: their matmul FLOPs in decoder layers, from the model's shapes;
no fitted constant), written as a layout string (:func:`cost_balanced_layout`) that is
evaluated exactly as the same string pinned (:func:`.pipeline_layout.layout_stage_split`).
Pure Python (no numpy).
"""

from __future__ import annotations

import math
from functools import lru_cache

_EPS = 1e-9  # float slack when a target cost is k + w exactly


def stage_cost_weights(model) -> tuple[float, float]:
    """Extra cost of the first and last pipeline rank, in average decoder layers (FLOPs ratio).

    A decoder layer costs its matmul weights ``x 6`` plus its causal attention core (and SSD
    core) per token, as Megatron counts model FLOPs (:func:`carbonscaling.mfu.megatron_flops_per_token`).
    The first rank adds the embedding lookup (no matmul: 0); the last adds the output layer,
    ``6 d_model vocab``, and each MTP module (its transformer layer with attention core, the
    ``2d -> d`` projection and its own output layer). Cross entropy and norms are memory-bound
    and left out.

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    tuple of float
        ``(w_first, w_last)`` in decoder layers (``w_first`` is 0).

    References
    ----------
    Narayanan et al., SC 2021, App. (model FLOPs); Megatron-Core ``multi_token_prediction.py``.
    """
    from ..mfu import layer_matmul_weights, logit_weights, mtp_matmul_weights, score_flops_per_token, \
        ssd_flops_per_token

    score = score_flops_per_token(model, causal=True)
    decoder = 6.0 * layer_matmul_weights(model) + score + ssd_flops_per_token(model)
    per_layer = decoder / max(model.n_layers, 1)
    mtp_score = model.mtp_layers * score / max(model.n_attention_layers, 1)
    ends = 6.0 * (logit_weights(model) + mtp_matmul_weights(model)) + mtp_score
    return 0.0, ends / per_layer if per_layer > 0 else 0.0


def _capacity(t: float, w: float) -> int:
    return math.floor(t - w + _EPS)


@lru_cache(maxsize=65536)
def cost_balanced_ranks(n_layers: int, pp: int, vp: int, w_first: float, w_last: float) -> tuple[int, ...] | None:
    """Decoder layers per pipeline rank with the heaviest rank's cost (layers + end weight) least.

    Every model chunk holds at least one item (the first rank's first chunk may hold only the
    embedding, the last rank's last only the loss), as :func:`.pipeline.stage_split` assumes.
    At the least achievable cost, capacity left over is taken from the earliest ranks first:
    under 1F1B they hold the most microbatches' activations.

    Parameters
    ----------
    n_layers : int
        Decoder layers (L).
    pp, vp : int
        Pipeline ranks and chunks per rank.
    w_first, w_last : float
        Extra cost of the first and last rank in decoder layers (:func:`stage_cost_weights`).

    Returns
    -------
    tuple of int or None
        Layers of rank 0 .. ``pp - 1``; None when ``pp x vp > L + 2`` (or ``pp == 1 < vp``).
    """
    L, p, v = n_layers, pp, vp
    if p < 1 or v < 1 or (p == 1 and v > 1):
        return None
    if p == 1:
        return (L,)
    lo = [max(v - 1, 0)] + [v] * (p - 2) + [max(v - 1, 0)]
    if sum(lo) > L:
        return None
    w = [w_first] + [0.0] * (p - 2) + [w_last]

    def caps(t):
        return [_capacity(t, wi) for wi in w]

    def feasible(t):
        c = caps(t)
        return all(ci >= li for ci, li in zip(c, lo)) and sum(c) >= L

    targets = sorted({k + wi for k in range(L + 1) for wi in set(w)})
    lo_i, hi_i = 0, len(targets) - 1
    while lo_i < hi_i:  # feasibility grows with the target: the least feasible one by bisection
        mid = (lo_i + hi_i) // 2
        lo_i, hi_i = (lo_i, mid) if feasible(targets[mid]) else (mid + 1, hi_i)
    counts = caps(targets[lo_i])
    slack = sum(counts) - L
    for r in range(p):
        take = min(slack, counts[r] - lo[r])
        counts[r] -= take
        slack -= take
    return tuple(counts)


def _chunk_text(n_t: int, emb: bool, mtp: int, loss: bool) -> str:
    def run(ch, n):
        return ch * n if n <= 2 else f"{ch}*{n}"

    return ("E" if emb else "") + run("t", n_t) + run("m", mtp) + ("L" if loss else "")


def _compress(chunks: list[str]) -> str:
    """Chunks joined by ``|``, runs of equal chunks as ``(c|)*n`` (Megatron's repeat syntax)."""
    out, i = [], 0
    while i < len(chunks):
        j = i
        while j + 1 < len(chunks) and chunks[j + 1] == chunks[i]:
            j += 1
        n = j - i + 1
        last = j == len(chunks) - 1
        if n >= 3 or (n == 2 and not last):
            out.append(f"({chunks[i]}|)*{n - 1 if last else n}" + (chunks[i] if last else ""))
        else:
            out.append("|".join(chunks[i:j + 1]) + ("" if last else "|"))
        i = j + 1
    return "".join(out)


@lru_cache(maxsize=65536)
def cost_balanced_layout(n_layers: int, pp: int, vp: int, mtp_layers: int, w_first: float,
                         w_last: float) -> str | None:
    """The Megatron-Core ``pipeline_model_parallel_layout`` of :func:`cost_balanced_ranks`.

    Each rank's items (its decoder layers, plus the embedding on rank 0 and the loss on the last
    rank) are spread near-evenly over its ``vp`` chunks (chunk ``i`` on rank ``i mod PP``), the
    extra ones on its later chunks; the embedding opens the first chunk, the MTP layers and the
    loss close the last.

    Parameters
    ----------
    n_layers, pp, vp, mtp_layers : int
        Decoder layers, pipeline ranks, chunks per rank, MTP layers.
    w_first, w_last : float
        End weights (:func:`stage_cost_weights`).

    Returns
    -------
    str or None
        For example ``Et*4|(t*4|)*14tmL`` (DeepSeek-V3 on PP 16); None where no split exists or
        ``pp == 1`` (nothing to lay out).

    References
    ----------
    Megatron-Core ``PipelineParallelLayerLayout`` (``megatron/core/transformer/pipeline_parallel_layer_layout.py``).
    """
    ranks = cost_balanced_ranks(n_layers, pp, vp, w_first, w_last)
    if ranks is None or pp == 1:
        return None
    chunks = [""] * (pp * vp)
    for r, n in enumerate(ranks):
        emb, loss = r == 0, r == pp - 1
        items = n + emb + loss
        per = [items // vp + (j >= vp - items % vp) for j in range(vp)]
        for j in range(vp):
            n_t = per[j] - (emb and j == 0) - (loss and j == vp - 1)
            chunks[j * pp + r] = _chunk_text(n_t, emb and j == 0, mtp_layers if loss and j == vp - 1 else 0,
                                             loss and j == vp - 1)
    return _compress(chunks)


def searched_layout(model, options, pp: int, vp: int) -> str | None:
    """The ``pipeline_model_parallel_layout`` a step was evaluated with, for reports.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    options : TrainingOptions
        ``pipeline_layout`` (pinned: returned as given), ``pipeline_balance`` and the convention.
    pp, vp : int
        The layout's pipeline ranks and chunks per rank.

    Returns
    -------
    str or None
        The pinned layout, else the cost-balanced one (:func:`cost_balanced_layout`); None for
        ``PP 1``, cs-v1 and ``pipeline_balance='layers'`` (Megatron's classic splits need none).
    """
    if options.pipeline_layout is not None:
        return options.pipeline_layout
    if options.legacy or options.pipeline_balance != "cost" or pp <= 1:
        return None
    return cost_balanced_layout(model.n_layers, pp, vp, model.mtp_layers, *stage_cost_weights(model))
