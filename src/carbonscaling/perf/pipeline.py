"""Pipeline parallelism: how layers are split over (virtual) stages, and the 1F1B schedule.

Megatron-Core splits ``L`` layers over ``PP`` stages of ``VP`` model chunks each in one
of these ways (``megatron.core.transformer.transformer_block.get_num_layers_to_build``):

* even: ``L`` divisible by ``PP x VP``;
* ``account_for_embedding_in_pipeline_split`` / ``account_for_loss_in_pipeline_split``:
  the embedding and the loss each count as one layer, so ``L + 2`` (or ``L + 1``) is
  divided evenly and the first (last) chunk holds one layer fewer -- Llama 3.1 405B's
  126 layers on ``PP 8 x VP 8`` run this way (``126 + 2 = 64 x 2``);
* ``num_layers_in_first_pipeline_stage`` / ``..._last_...``: the first and last stage
  hold their own counts, the middle stages share the rest evenly; with VP every stage's
  count is a multiple of VP;
* ``pipeline_model_parallel_layout`` (Megatron-Core >= 0.13; DeepSeek-V3's 61 layers on
  ``PP 4 x VP 4`` in Megatron-Bridge): any layers per chunk, so the search's balanced
  split (embedding and loss counted as a layer each) exists whenever ``PP x VP <= L + 2``.

:func:`stage_split` returns the first/middle/last stage's layer counts of the best of
these (the heaviest stage as light as possible, the last stage, which computes the
logits, no heavier than the first), or ``None`` when Megatron cannot express
``(L, PP, VP)``: the layer-count split (``pipeline_balance='layers'``, how runs without a
layout are split). The search's default weighs the output layer and MTP modules by their
cost instead (:mod:`.pipeline_cost`, a custom layout, used by :func:`stage_plan`). The
search offers only splits that exist, so every layout it returns is accepted when pinned.
CarbonScaling v1's rule (:func:`legacy_stage_split`) is kept for the paper scenarios.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .groups import group_rows
from .pipeline_cost import cost_balanced_layout
from .pipeline_layout import (  # noqa: F401  (re-exported)
    MAX_LAYOUT_CHARS, layout_stage_split, parse_pipeline_layout, split_leading_dense,
)

MAX_INTERLEAVE = 8
LEGACY_UNEVEN_INTERLEAVES = (1, 2, 4)  # v1 rule when PP does not divide the layers


@lru_cache(maxsize=65536)
def stage_split(n_layers: int, pp: int, vp: int = 1, custom: bool = True) -> tuple[int, int, int] | None:
    """Layers on the (first, middle, last) pipeline stage as Megatron-Core can split them.

    ``middle`` is 0 when ``pp <= 2``; ``pp == 1`` returns ``(L, 0, 0)``.

    Parameters
    ----------
    n_layers : int
        Transformer layers (L).
    pp : int
        Pipeline stages.
    vp : int, optional
        Virtual stages (model chunks) per device (default 1).
    custom : bool, optional
        Allow ``pipeline_model_parallel_layout`` (any layers per chunk; default True).

    Returns
    -------
    tuple of int or None
        ``(first, middle, last)`` layer counts per device, or None if no Megatron split
        exists (e.g. more chunks than layers).

    References
    ----------
    Megatron-Core ``get_num_layers_to_build`` (``megatron/core/transformer/transformer_block.py``).
    """
    L, p, v = n_layers, pp, vp
    if p < 1 or v < 1 or p * v > L + 2 or (p == 1 and v > 1):
        return None
    if p == 1:
        return (L, 0, 0)
    chunks = p * v
    cands = []
    if L % chunks == 0:
        n = L // p
        cands.append((n, n if p > 2 else 0, n))
    if (L + 2) % chunks == 0 and (L + 2) // chunks >= 1:
        n = (L + 2) // p
        cands.append((n - 1, n if p > 2 else 0, n - 1))
    if (L + 1) % chunks == 0:
        n = (L + 1) // p
        cands.append((n, n if p > 2 else 0, n - 1))
    # Uneven first/last stage (every stage a multiple of VP, at least one layer per chunk).
    mids = range(v, L // max(p - 2, 1) + 1, v) if p > 2 else [0]
    for m in mids:
        rest = L - (p - 2) * m
        if rest < 2 * v:
            break
        if rest % v:
            continue
        last = (rest // v) // 2 * v
        cands.append((rest - last, m, last))
    if custom:
        # pipeline_model_parallel_layout: any layers per chunk; embedding and loss count as one
        # layer each; spare layers go to middle stages first.
        units, rem = divmod(L + 2, p)
        extra_ends = max(0, rem - max(p - 2, 0))
        mid = units + (1 if rem > extra_ends else 0)
        first, last = units + (extra_ends >= 1) - 1, units + (extra_ends >= 2) - 1
        if min(first, last) >= 0 and (p <= 2 or mid >= 1):
            cands.append((first, mid if p > 2 else 0, last))
    cands = [c for c in cands if min(c[0], c[2]) >= 0 and c[0] + c[2] > 0]
    if not cands:
        return None
    # Heaviest stage first (the last one also computes the logits: half a layer as a tie-break).
    return min(cands, key=lambda c: (max(c[0], c[1], c[2] + 0.5), c[2]))


def legacy_stage_split(n_layers: int, pp: int) -> tuple[int, int, int]:
    """CarbonScaling v1: extra layers go to middle stages first (no interleave constraint).

    Parameters
    ----------
    n_layers : int
        Layers (L).
    pp : int
        Pipeline stages.

    Returns
    -------
    tuple of int
        ``(first, middle, last)`` layer counts per device (``middle`` 0 when ``pp <= 2``).

    References
    ----------
    Jiang and Chen, CarbonScaling v1, Sec. 4 (layout search).
    """
    lo, r = divmod(n_layers, pp)
    if pp == 1:
        return (n_layers, 0, 0)
    mids = max(pp - 2, 0)
    first = lo + (r - min(r, mids) >= 1)
    mid = lo + (r > 0 and mids > 0)
    return (first, mid if mids > 0 else 0, lo)


def stage_layers(n_layers: int, pp: np.ndarray, v: np.ndarray, legacy: bool = False):
    """Arrays of (first, middle, last) stage layer counts; -1 where the split does not exist.

    Parameters
    ----------
    n_layers : int
        Layers (L).
    pp, v : ndarray
        Pipeline stages and virtual stages per device of each layout.
    legacy : bool, optional
        CarbonScaling v1's rule (:func:`legacy_stage_split`) instead of Megatron-Core's (default False).

    Returns
    -------
    first, middle, last : ndarray of int
        Layer counts per device, shaped like ``pp`` (the first half of :func:`stage_plan`).
    """
    return stage_plan(n_layers, pp, v, legacy=legacy)[0]


def stage_plan(n_layers: int, pp: np.ndarray, v: np.ndarray, legacy: bool = False, layout: str | None = None,
               mtp_layers: int = 0, leading_dense: int = 0, cost_weights: tuple[float, float] | None = None):
    """Layers of the (first, middle, last) stage and the leading dense layers on them, or a custom layout's.

    Parameters
    ----------
    n_layers : int
        Decoder layers (L).
    pp, v : ndarray
        Pipeline stages and virtual stages per device of each layout.
    legacy : bool, optional
        CarbonScaling v1's split rule (default False).
    layout : str, optional
        A Megatron-Core ``pipeline_model_parallel_layout`` the run pins
        (:func:`layout_stage_split`); layouts whose ``pp x v`` is not its chunk count get -1.
    mtp_layers, leading_dense : int, optional
        The model's MTP layers (checked against ``layout``) and leading dense-FFN layers.
    cost_weights : tuple of float, optional
        ``(w_first, w_last)`` of :func:`.pipeline_cost.stage_cost_weights`: without a pinned
        ``layout``, each ``(pp, v)`` gets the cost-balanced custom layout
        (:func:`.pipeline_cost.cost_balanced_layout`), evaluated as that layout pinned.

    Returns
    -------
    (first, middle, last), (dense_first, dense_middle, dense_last) : tuples of ndarray of int
        Layers per device, shaped like ``pp`` (-1 where the split does not exist), and how many
        of them are leading dense layers.
    """
    pp = np.asarray(pp, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    pp, v = np.broadcast_arrays(pp, v)
    first, inv = group_rows(pp, v)
    out = np.empty((len(first), 6), dtype=np.int64)
    for i, (p, vv) in enumerate(zip(pp.reshape(-1)[first].tolist(), v.reshape(-1)[first].tolist())):
        if layout is not None and not legacy:
            s = layout_stage_split(layout, p, vv, n_layers, mtp_layers, leading_dense)
            out[i] = (*s[0], *s[1]) if s is not None else (-1, -1, -1, 0, 0, 0)
            continue
        if cost_weights is not None and not legacy and p > 1:
            lay = cost_balanced_layout(n_layers, p, vv, mtp_layers, *cost_weights)
            s = layout_stage_split(lay, p, vv, n_layers, mtp_layers, leading_dense) if lay is not None else None
            out[i] = (*s[0], *s[1]) if s is not None else (-1, -1, -1, 0, 0, 0)
            continue
        s = legacy_stage_split(n_layers, p) if legacy else stage_split(n_layers, p, vv)
        out[i] = (*s, *split_leading_dense(s, p, vv, leading_dense)) if s is not None else (-1, -1, -1, 0, 0, 0)
    res = out[inv] if len(first) else np.zeros((0, 6), dtype=np.int64)
    cols = [res[:, k].reshape(pp.shape) for k in range(6)]
    return tuple(cols[:3]), tuple(cols[3:])


def interleave_options(n_layers: int, pp: int, legacy: bool = False) -> list[int]:
    """Virtual stages per device the search tries at this depth.

    Parameters
    ----------
    n_layers : int
        Layers (L).
    pp : int
        Pipeline stages.
    legacy : bool, optional
        CarbonScaling v1's rules (default False).

    Returns
    -------
    list of int
        VP values (1 .. ``MAX_INTERLEAVE``) with a classic split (a custom layout is still
        accepted when pinned).
    """
    if pp == 1:
        return [1]
    if legacy:
        per, rem = divmod(n_layers, pp)
        if rem:  # v1 rule, bounded by the layers a stage holds (a chunk needs a layer)
            return [v for v in LEGACY_UNEVEN_INTERLEAVES if v <= per]
        return [v for v in range(1, MAX_INTERLEAVE + 1) if per % v == 0]
    # Virtual stages the classic splits allow (a custom layout is accepted when pinned).
    return [v for v in range(1, MAX_INTERLEAVE + 1) if stage_split(n_layers, pp, v, custom=False) is not None]


def pipeline_time(m, t_max, t_sum, v):
    """Interleaved 1F1B: ``(m + (p - 1)/v)`` stage-times for ``m >= p`` microbatches.

    ``m t_max + (S - t_max) / v``; with fewer microbatches than stages one microbatch's
    trip through all ``p v`` chunks (plus the others' offsets) binds: ``S + (m - 1) t_max / v``.

    Parameters
    ----------
    m : float or ndarray
        Microbatches per pipeline per step.
    t_max : float or ndarray
        Seconds of the slowest stage for one microbatch (forward + backward).
    t_sum : float or ndarray
        Seconds of one microbatch through all stages (S).
    v : float or ndarray
        Virtual stages per device.

    Returns
    -------
    ndarray
        Seconds of the pipelined part of a step, bubble included.

    References
    ----------
    Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM", SC 2021, Sec. 2.2.2.
    """
    return np.maximum(m * t_max + (t_sum - t_max) / v, t_sum + (m - 1) * t_max / v)


def pipeline_send_time(send, stage_compute, v, overlap):
    """Exposed seconds of one stage's pipeline sends per microbatch (forward and backward).

    Each of the ``v`` model chunks sends its output forward and its input gradient backward
    (``2 v`` sends of ``send`` seconds). Under interleaving Megatron-Core posts them
    asynchronously (``overlap_p2p_comm``, which Megatron-Bridge's ``CommOverlapConfig`` turns
    on whenever ``PP > 1`` and ``VP > 1``; with ``VP = 1`` it batches them instead,
    ``batch_p2p_comm``): a forward send overlaps the next backward chunk (about 2/3 of a
    chunk's compute), a backward send the next forward chunk (1/3), and only the excess is
    exposed.

    Parameters
    ----------
    send : float or ndarray
        Seconds of one send of a microbatch's boundary activations (:func:`.comm.p2p_time`).
    stage_compute : float or ndarray
        Seconds of the stage's forward + backward for one microbatch, all its chunks.
    v : float or ndarray
        Model chunks per device (VP).
    overlap : bool or ndarray
        Sends overlapped (interleaved schedule with ``overlap_p2p_comm``).

    Returns
    -------
    ndarray
        Exposed seconds per microbatch: ``2 v send`` without overlap, else
        ``v (max(0, send - 2 t/3) + max(0, send - t/3))`` with ``t`` one chunk's compute.

    References
    ----------
    Megatron-Core ``forward_backward_pipelining_with_interleaving``
    (``megatron/core/pipeline_parallel/schedules.py``, ``overlap_p2p_comm``); Megatron-Bridge
    ``src/megatron/bridge/training/comm_overlap.py`` (``_get_model_comm_overlap_cfgs``).
    """
    chunk = stage_compute / np.maximum(v, 1)
    exposed = v * (np.maximum(0.0, send - 2.0 * chunk / 3.0) + np.maximum(0.0, send - chunk / 3.0))
    return np.where(overlap, exposed, 2.0 * v * send)
