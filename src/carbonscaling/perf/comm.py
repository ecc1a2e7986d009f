"""Collective communication times, with each group placed on the links it really uses.

A group of ``n`` ranks whose members are ``stride`` ranks apart (Megatron order:
TP innermost) has ``k = min(n, domain // stride)`` members inside one scale-up
domain (NVLink island, or TPU pod). Collectives are hierarchical, as NCCL's are:
the ``k`` local members exchange over NVLink/ICI, and each of them carries ``1/k``
of the data across the ``n / k`` domains over its own NIC. So the scale-out
bandwidth a group sees grows with the NICs it spans.

``time = latency x steps + bytes x algorithm factor / (bandwidth x efficiency)``;
ring factors ``2 (n-1)/n`` (all-reduce) and ``(n-1)/n`` (reduce-scatter, all-gather).
Latency counts ``2 ceil(log2 n)`` steps (NCCL's tree for large groups).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import System
from .constants import PerfConstants
from .groups import group_rows

ALGO_FACTOR = {"all_reduce": 2.0, "reduce_scatter": 1.0, "all_gather": 1.0}


def scale_up_bandwidth(system: System, c: PerfConstants) -> float:
    """Achievable bytes/s per device, one direction, inside the scale-up domain.

    Parameters
    ----------
    system : System
        The system; its device's ``scale_up_gb_s`` (NVLink/ICI, both directions, GB/s) is used.
    c : PerfConstants
        ``nvlink_efficiency`` (GPUs) or ``ici_efficiency`` (TPUs), dimensionless.

    Returns
    -------
    float
        Bandwidth in bytes/s: half the bidirectional datasheet rate times the efficiency.
    """
    eff = c.ici_efficiency if system.device.kind == "tpu" else c.nvlink_efficiency
    return system.device.scale_up_gb_s / 2.0 * 1e9 * eff


def scale_out_bandwidth(system: System, c: PerfConstants) -> float:
    """Achievable bytes/s per device over its NIC (InfiniBand/RoCE, or TPU data-center network).

    Parameters
    ----------
    system : System
        The system; ``scale_out_gb_s`` is its per-device NIC bandwidth (GB/s, one direction).
    c : PerfConstants
        ``scale_out_efficiency``, dimensionless.

    Returns
    -------
    float
        Bandwidth in bytes/s.
    """
    return system.scale_out_gb_s * 1e9 * c.scale_out_efficiency


@dataclass(frozen=True)
class RingGroup:
    """Placement of a collective group: seconds per byte (at ring factor 1) and latency."""

    per_byte_s: np.ndarray
    latency_s: np.ndarray
    active: np.ndarray  # more than one rank

    def time(self, kind: str, n_bytes):
        """Seconds for one collective of ``n_bytes`` per rank.

        Parameters
        ----------
        kind : {'all_reduce', 'reduce_scatter', 'all_gather'}
            The collective; sets the ring algorithm factor (2, 1, 1; ``ALGO_FACTOR``).
        n_bytes : float or ndarray
            Bytes per rank (the full buffer, before the ``(n-1)/n`` ring share).

        Returns
        -------
        ndarray
            Seconds: ``factor x n_bytes x per_byte_s + latency_s``; 0 for one-rank groups.
        """
        return np.where(self.active, ALGO_FACTOR[kind] * n_bytes * self.per_byte_s + self.latency_s, 0.0)


def members_per_domain(n, stride, domain: int, carved: bool = False):
    """Fewest members of one group inside one scale-up domain (the group's slowest NIC share).

    Groups aligned with domains have ``domain // stride`` members in each; a group that
    straddles a boundary (TP = 6 on 8-GPU nodes, a partial last node) has as few as
    ``gcd(n * stride, domain) / stride`` in one of them. ``carved``: the domain is a
    large fabric (a TPU pod's torus, an NVL72 rack) from which the scheduler carves
    slices that fit the job's groups (PaLM ran 12-chip model-parallel groups on 3072 of
    a pod's 4096 chips), so groups are never split by it.

    Parameters
    ----------
    n : int or ndarray
        Ranks in the group.
    stride : int or ndarray
        Distance between consecutive members in global rank order (Megatron order, TP innermost).
    domain : int
        Devices per scale-up domain (NVLink island, TPU pod).
    carved : bool, optional
        The domain is a fabric the scheduler carves aligned slices from (default False).

    Returns
    -------
    ndarray
        Members per domain (float, at least 1, at most ``n``).
    """
    n = np.asarray(n, dtype=np.int64)
    stride = np.maximum(np.asarray(stride, dtype=np.int64), 1)
    span = n * stride
    per = np.minimum(n, np.maximum(1, domain // stride))
    aligned = carved | ((domain % stride == 0) & np.where(span <= domain, domain % np.maximum(span, 1) == 0,
                                                         span % domain == 0))
    straddled = np.maximum(1, np.gcd(span, domain) // stride)
    return np.where(aligned, per, np.minimum(per, straddled)).astype(float)


def _carved(system: System) -> bool:
    return system.scale_up_domain > system.devices_per_node


def ring_group(n, stride, system: System, c: PerfConstants) -> RingGroup:
    """Where a group of ``n`` ranks ``stride`` apart sits, as a cost per byte and a latency.

    Hierarchical collectives as NCCL runs them: ``k`` members per scale-up domain
    (:func:`members_per_domain`) exchange over NVLink/ICI and each carries ``1/k`` of the
    data across the ``n / k`` domains over its NIC; latency counts ``2 ceil(log2 n)`` steps.
    A search grid repeats few distinct ``(n, stride)`` pairs over many layouts: each
    distinct pair is placed once and the result indexed back.

    Parameters
    ----------
    n : int or ndarray
        Ranks in the group.
    stride : int or ndarray
        Distance between consecutive members in global rank order.
    system : System
        Devices, scale-up domain and NIC bandwidth.
    c : PerfConstants
        Link efficiencies and per-step latencies (s).

    Returns
    -------
    RingGroup
        ``per_byte_s`` (s/byte at ring factor 1), ``latency_s`` (s) and ``active`` (n > 1).

    References
    ----------
    NCCL ring and tree algorithms (NVIDIA, nccl ``src/graph/tuning.cc``).
    """
    n = np.asarray(n)
    stride = np.asarray(stride)
    if (n.ndim == 1 and n.size > 64 and np.issubdtype(n.dtype, np.integer)
            and np.issubdtype(stride.dtype, np.integer)):
        stride = np.broadcast_to(stride, n.shape)
        first, inv = group_rows(n, stride)
        if len(first) < n.size // 4:
            g = _ring_group(n[first], stride[first], system, c)
            return RingGroup(per_byte_s=g.per_byte_s[inv], latency_s=g.latency_s[inv], active=g.active[inv])
    return _ring_group(n, stride, system, c)


def _ring_group(n, stride, system: System, c: PerfConstants) -> RingGroup:
    k = members_per_domain(n, stride, system.scale_up_domain, _carved(system))
    n = np.asarray(n, dtype=float)
    nodes = np.ceil(n / k)
    per_byte = (k - 1) / k / scale_up_bandwidth(system, c) + (nodes - 1) / nodes / k / scale_out_bandwidth(system, c)
    steps_in = 2.0 * np.ceil(np.log2(np.maximum(k, 1)))
    steps_out = 2.0 * np.ceil(np.log2(np.maximum(nodes, 1)))
    lat = steps_in * c.nvlink_latency_s + steps_out * c.scale_out_latency_s
    return RingGroup(per_byte_s=per_byte, latency_s=lat, active=n > 1)


def all_to_all_time(n_bytes, n, stride, system: System, c: PerfConstants):
    """Seconds for an all-to-all where each rank sends ``n_bytes`` spread evenly over ``n`` ranks.

    Local destinations go over NVLink/ICI, remote ones over the NIC, concurrently.

    Parameters
    ----------
    n_bytes : float or ndarray
        Bytes each rank sends in total (its own share included).
    n : int or ndarray
        Ranks in the group.
    stride : int or ndarray
        Distance between consecutive members in global rank order.
    system : System
        Devices, scale-up domain and NIC bandwidth.
    c : PerfConstants
        Link efficiencies and latencies (s).

    Returns
    -------
    ndarray
        Seconds: the slower of the local and remote parts plus ``ceil(log2 n)`` latencies; 0 for one rank.
    """
    k = members_per_domain(n, stride, system.scale_up_domain, _carved(system))
    n = np.asarray(n, dtype=float)
    t_in = n_bytes * (k - 1) / n / scale_up_bandwidth(system, c)
    t_out = n_bytes * (n - k) / n / scale_out_bandwidth(system, c)
    lat = np.where(n > k, c.scale_out_latency_s, c.nvlink_latency_s) * np.ceil(np.log2(np.maximum(n, 1)))
    return np.where(n > 1, np.maximum(t_in, t_out) + lat, 0.0)


def p2p_time(n_bytes, stride, stages, system: System, c: PerfConstants):
    """Seconds for one send to the next pipeline stage (``stride`` ranks away).

    It stays on NVLink/ICI only if the whole pipeline fits in one scale-up domain;
    otherwise some stage boundary crosses to another node and that hop binds.

    Parameters
    ----------
    n_bytes : float or ndarray
        Bytes sent (one microbatch's activations or gradients at the stage boundary).
    stride : int or ndarray
        Ranks between consecutive stages (``TP x CP`` in Megatron order).
    stages : int or ndarray
        Pipeline stages (PP).
    system : System
        Scale-up domain and link bandwidths.
    c : PerfConstants
        Link efficiencies and latencies (s).

    Returns
    -------
    ndarray
        Seconds: one latency plus ``n_bytes`` over the binding link's bandwidth.
    """
    local = stride * stages <= system.scale_up_domain
    bw = np.where(local, scale_up_bandwidth(system, c), scale_out_bandwidth(system, c))
    lat = np.where(local, c.nvlink_latency_s, c.scale_out_latency_s)
    return lat + n_bytes / bw
