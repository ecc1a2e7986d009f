"""The MoE token dispatcher: the permutes around the expert all-to-all and the all-to-all itself.

Megatron-Core's token dispatcher sends each token's routed copies to the EP ranks holding its
experts and brings them back (dispatch and combine): :func:`dispatch_combine_bytes` is what a
rank sends, :func:`permute_time` its local token copies around the all-to-all, and
:func:`dispatch_time` the all-to-all on the scale-up domain and the network -- plain
(``alltoall``) or hierarchical (``flex``: DeepEP / HybridEP, one network copy per destination
domain, :func:`remote_domains_per_token`, and one NVLink copy per destination rank,
:func:`distinct_ranks_per_token`). The experts' compute is :mod:`.moe`'s.
"""

from __future__ import annotations

import numpy as np

from ..hardware import Device, System
from . import kernels as K
from .comm import _carved, members_per_domain, scale_out_bandwidth, scale_up_bandwidth
from .constants import PerfConstants


def dispatch_combine_bytes(tokens, top_k, d_model, tp=1, capacity_factor=1.0, dispatch_bytes=2.0,
                           combine_bytes=2.0):
    """Bytes one rank sends in one forward dispatch and one combine of an MoE layer.

    Each of the rank's ``tokens / TP`` tokens (sequence-parallel slice) goes to ``k`` experts
    (``x`` capacity factor): ``k d`` elements out in the dispatch, back in the combine.
    The dispatch may travel in FP8 (DeepEP's FP8 dispatch); the combine is BF16.

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of a microbatch per attention rank.
    top_k : int
        Experts per token.
    d_model : int
        Hidden size (elements per token copy).
    tp : int or ndarray, optional
        Tensor-parallel size (default 1).
    capacity_factor : float, optional
        Default 1.0.
    dispatch_bytes, combine_bytes : float, optional
        Bytes per element in each direction (default 2.0, BF16).

    Returns
    -------
    dispatch, combine : ndarray
        Bytes.
    """
    copies = routed_elements(tokens, top_k, d_model, tp, capacity_factor)
    return copies * dispatch_bytes, copies * combine_bytes


def routed_elements(tokens, top_k, d_model, tp=1, capacity_factor=1.0):
    """Elements of the routed token copies of one rank's ``tokens / TP`` sequence-parallel slice.

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of a microbatch per attention rank.
    top_k : int
        Experts per token.
    d_model : int
        Hidden size (elements per token copy).
    tp : int or ndarray, optional
        Tensor-parallel size (default 1).
    capacity_factor : float, optional
        Default 1.0.

    Returns
    -------
    ndarray
        ``tokens x k x capacity factor x d / TP`` elements.
    """
    return np.asarray(tokens, dtype=float) * top_k * capacity_factor * d_model / np.asarray(tp, dtype=float)


def permute_time(tokens, top_k, d_model, tp, device: Device, c: PerfConstants, capacity_factor=1.0):
    """Times of the token permutations around the expert all-to-all.

    Megatron-Core's all-to-all token dispatcher copies every routed token copy four times
    in the forward (permute by expert before the dispatch, sort the received chunks by
    local expert, unsort them, and the probability-weighted unpermute after the combine)
    and again in the backward: ``moe_permute_bytes_fwd`` bytes (read + write, BF16) per
    routed element each way. The ``tokens / TP`` sequence-parallel slice of each rank is routed.

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of a microbatch per attention rank.
    top_k : int
        Experts per token.
    d_model : int
        Hidden size.
    tp : int or ndarray
        Tensor-parallel size.
    device : Device
        Peak rates (FLOP/s), HBM bandwidth (GB/s).
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    capacity_factor : float, optional
        Default 1.0.

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds (HBM-bound; equal).
    """
    t = K.memory_bound_time(c.moe_permute_bytes_fwd * routed_elements(tokens, top_k, d_model, tp, capacity_factor),
                            device, c)
    return t, t


def remote_domains_per_token(top_k, ep, members_in_domain):
    """Expected distinct *other* scale-up domains a token's ``k`` experts fall in.

    The ``EP`` ranks span ``D = EP / members`` domains; with the experts of a token spread
    uniformly over them, each other domain is hit with probability ``1 - (1 - 1/D)^k``.

    Parameters
    ----------
    top_k : int
        Experts per token.
    ep : int or ndarray
        Expert-parallel ranks.
    members_in_domain : float or ndarray
        EP ranks per scale-up domain.

    Returns
    -------
    ndarray
        Expected domains (count, 0 .. D - 1).
    """
    d = np.maximum(np.asarray(ep, dtype=float) / np.asarray(members_in_domain, dtype=float), 1.0)
    return (d - 1.0) * (1.0 - (1.0 - 1.0 / d) ** top_k)


def distinct_ranks_per_token(top_k, n_experts, ep):
    """Expected EP ranks a token's ``k`` (distinct) experts land on, ``E / EP`` experts a rank.

    A rank is missed with probability ``C(E - E/EP, k) / C(E, k)`` (balanced routing: the
    ``k`` experts uniform over the ``E``, without repetition).

    Parameters
    ----------
    top_k : int
        Experts per token.
    n_experts : int
        Routed experts.
    ep : int or ndarray
        Expert-parallel ranks.

    Returns
    -------
    ndarray
        Expected ranks (count, 1 .. min(k, EP)).
    """
    n = np.asarray(ep, dtype=float)
    off = n_experts - n_experts / n  # experts not on a given rank
    miss = np.ones_like(n)
    for i in range(int(top_k)):
        miss = miss * np.maximum(off - i, 0.0) / (n_experts - i)
    return n * (1.0 - miss)


def dispatch_time(payload_bytes, top_k, ep, stride, system: System, c: PerfConstants, dedup: bool = True,
                  n_experts: int | None = None):
    """Seconds of one dispatch (or combine) all-to-all of ``payload_bytes`` routed copies per rank.

    Plain all-to-all (Megatron's ``alltoall`` dispatcher, ``dedup=False``): the ``(n - k)/n``
    of the copies bound for other domains leave over the rank's NIC (:func:`comm.all_to_all_time`).
    Hierarchical (``flex`` dispatcher: DeepEP / HybridEP, what Megatron-Bridge's MoE recipes
    run): a token crosses the network once per destination domain and is forwarded to its
    experts over NVLink there, so the NIC carries ``remote_domains_per_token / k`` of the
    copies; inside the domain a token crosses NVLink once per destination *rank*, not per
    expert (DeepEP ``get_dispatch_layout``: ``is_token_in_rank``, one row per token and rank;
    HybridEP's intra-node buffer holds one token per source token with the probabilities of all
    the rank's experts), so NVLink carries :func:`distinct_ranks_per_token` ``/ k`` of the copies
    when ``n_experts`` is given; the combine returns one reduced row per rank likewise.

    Parameters
    ----------
    payload_bytes : float or ndarray
        Bytes of routed copies a rank sends (:func:`dispatch_combine_bytes`).
    top_k : int
        Experts per token.
    ep : int or ndarray
        Expert-parallel ranks.
    stride : int or ndarray
        Distance between EP ranks in global rank order.
    system : System
        Scale-up domain and link bandwidths.
    c : PerfConstants
        Link efficiencies and latencies (s).
    dedup : bool, optional
        Hierarchical dispatch, one network copy per destination domain (default True).
    n_experts : int, optional
        Routed experts: with ``dedup``, one NVLink copy per destination rank (default: per copy).

    Returns
    -------
    ndarray
        Seconds; 0 for EP = 1.

    References
    ----------
    DeepSeek-AI, DeepEP (github.com/deepseek-ai/DeepEP), node-limited dispatch,
    ``csrc/kernels/layout.cu get_dispatch_layout``; DeepSeek-V3 Technical Report 2024, Sec. 3.2.2;
    NVIDIA Hybrid-EP implementation guide (DeepEP ``hybrid-ep``), buffer sizes.
    """
    k_dom = members_per_domain(ep, stride, system.scale_up_domain, _carved(system))
    n = np.asarray(ep, dtype=float)
    if dedup:
        remote = remote_domains_per_token(top_k, n, k_dom) / top_k
    else:
        remote = (n - k_dom) / n
    t_out = payload_bytes * remote / scale_out_bandwidth(system, c)
    t_in = payload_bytes * (k_dom - 1) / np.maximum(k_dom, 1) / scale_up_bandwidth(system, c)
    if dedup and n_experts:
        t_in = t_in * distinct_ranks_per_token(top_k, n_experts, n) / top_k
    lat = np.where(n > k_dom, c.scale_out_latency_s, c.nvlink_latency_s) * np.ceil(np.log2(np.maximum(n, 1)))
    return np.where(n > 1, np.maximum(t_in, t_out) + lat, 0.0)
