"""Data-parallel, ZeRO and FSDP collectives of one step (what the first stage's device sends).

:func:`data_parallel_time` gives the gradient reduction and weight gathers per step and per
microbatch, before overlap; :func:`.step.evaluate` hides them under the backward (Megatron-Core
``overlap_grad_reduce``) and the forward (ZeRO-3 / FSDP prefetch).
"""

from __future__ import annotations

import numpy as np

from .comm import ring_group
from .memory import Memory
from .parameters import data_parallel_groups, local_shards


def data_parallel_time(model, system, g, o, c, mem: Memory):
    """Data-parallel / ZeRO / FSDP communication of the first stage.

    Dense gradients reduce over ``DP x CP`` ranks, expert gradients over the expert
    data-parallel group. ZeRO-0 all-reduce; ZeRO-1/2 reduce-scatter + all-gather of the
    updated weights; ZeRO-3 / FSDP two all-gathers (forward, backward) and a
    reduce-scatter per microbatch, and with hybrid sharding an all-reduce of the gradient
    shard across the replicas once per step; hierarchical ZeRO-3 (flexible sharding,
    LinS / ZeRO++ hpZ) keeps the per-microbatch collectives inside the scale-up domain and
    reduce-scatters/gathers across domains once per step.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision, overlap, attention and recompute options.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    mem : Memory
        Parameters on the first stage's device and the weight sharding groups.

    Returns
    -------
    per_step, per_microbatch : ndarray
        Seconds of collectives once per step and once per microbatch (before overlap).

    References
    ----------
    Rajbhandari et al., "ZeRO", SC 2020; Zhao et al., "PyTorch FSDP", VLDB 2023; Wang et al.,
    "ZeRO++", 2023.
    """
    p_d, p_e = mem.params_dense, mem.params_expert
    gb = o.gradient_bytes(c)
    wb = o.activation_bytes
    n_d, n_e = data_parallel_groups(g)
    st_d, st_e = g.tp, g.etp * g.ep

    def pair(nd, sd, ne, se):
        return ring_group(nd, sd, system, c), ring_group(ne, se, system, c)

    full = pair(n_d, st_d, n_e, st_e)

    def coll(kind, bytes_d, bytes_e, groups=full):
        return groups[0].time(kind, bytes_d) + groups[1].time(kind, bytes_e)

    ar = coll("all_reduce", p_d * gb, p_e * gb)
    rs_ag = coll("reduce_scatter", p_d * gb, p_e * gb) + coll("all_gather", p_d * wb, p_e * wb)
    w_d, w_e = mem.weight_shards
    zero = 0.0 * p_d
    z3_mb = hsdp_step = z4_step = zero
    if (g.zero >= 3).any():  # only grids with sharded weights pay for placing those groups
        shard = pair(w_d, st_d, w_e, st_e)
        z3_mb = 2.0 * coll("all_gather", p_d * wb, p_e * wb, shard) + coll("reduce_scatter", p_d * gb, p_e * gb,
                                                                           shard)
    if ((g.zero == 3) & (g.fsdp > 0)).any():
        replicas = pair(n_d // np.maximum(w_d, 1), st_d * w_d, n_e // np.maximum(w_e, 1), st_e * w_e)
        hsdp_step = coll("all_reduce", p_d / w_d * gb, p_e / w_e * gb, replicas)
    if (g.zero == 4).any():
        loc_d, loc_e = (np.maximum(x, 1) for x in local_shards(g, system))
        cross = pair(n_d / loc_d, st_d * loc_d, n_e / loc_e, st_e * loc_e)
        z4_step = coll("reduce_scatter", p_d / loc_d * gb, p_e / loc_e * gb, cross) + coll(
            "all_gather", p_d / loc_d * wb, p_e / loc_e * wb, cross)
    per_mb = np.where(g.zero >= 3, z3_mb, 0.0)  # prefetched under compute
    per_step = np.where(g.zero == 0, ar, np.where(g.zero <= 2, rs_ag, np.where(g.zero == 4, z4_step, hsdp_step)))
    return per_step, per_mb
