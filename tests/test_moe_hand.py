"""MoE and collective terms of the step model against hand calculations.

Round link speeds and efficiencies (``C.replace``) keep every number below checkable on
paper: an H100 system with 8-GPU NVLink domains, 900 GB/s NVLink (450 GB/s one way),
400 Gbit/s (50 GB/s) NICs, efficiencies 1 and latencies of 1 and 10 microseconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import comm, kernels as K, moe
from carbonscaling.perf.constants import default_constants

C = default_constants().replace(nvlink_efficiency=1.0, scale_out_efficiency=1.0, ici_efficiency=1.0,
                                nvlink_latency_s=1e-6, scale_out_latency_s=10e-6)
H100 = load_system("H100")
SU = 450e9   # NVLink bytes/s, one direction
SO = 50e9    # NIC bytes/s
MB = 1e6


def test_system_under_test_is_what_the_hand_calculations_assume():
    assert (H100.scale_up_domain, H100.devices_per_node) == (8, 8)
    assert comm.scale_up_bandwidth(H100, C) == pytest.approx(SU)
    assert comm.scale_out_bandwidth(H100, C) == pytest.approx(SO)
    assert comm.scale_up_bandwidth(H100, C.replace(nvlink_efficiency=0.5)) == pytest.approx(SU / 2)
    assert comm.scale_out_bandwidth(H100, C.replace(scale_out_efficiency=0.5)) == pytest.approx(SO / 2)


# ---- token counts and bytes --------------------------------------------------------------
def test_tokens_per_expert():
    # DeepSeek-V3-like: 4096 tokens per rank, top-8 of 256 experts, EP 64: 4096*8*64/256 = 8192
    assert moe.tokens_per_expert(4096, 8, 256, 64) == pytest.approx(8192)
    # TP 2 ranks share one token stream, ETP 2 shards both see every token: unchanged; TP alone halves
    assert moe.tokens_per_expert(4096, 8, 256, 64, etp=2, tp=2) == pytest.approx(8192)
    assert moe.tokens_per_expert(4096, 8, 256, 64, tp=2) == pytest.approx(4096)
    assert moe.tokens_per_expert(4096, 8, 256, 64, capacity_factor=1.25) == pytest.approx(10240)


def test_dispatch_combine_bytes():
    # 4096 tokens / TP 2 = 2048 routed to 8 experts of width 7168: 2048*8*7168 elements
    d, cmb = moe.dispatch_combine_bytes(4096, 8, 7168, tp=2, dispatch_bytes=1.0, combine_bytes=2.0)
    assert d == pytest.approx(2048 * 8 * 7168)
    assert cmb == pytest.approx(2 * 2048 * 8 * 7168)
    d2, _ = moe.dispatch_combine_bytes(4096, 8, 7168, capacity_factor=1.5)
    assert d2 == pytest.approx(1.5 * 2 * 4096 * 8 * 7168)


def test_permute_time_is_four_copies_of_every_routed_element_each_way():
    elems = 4096 * 2 * 1024 / 4  # tokens * k * d / TP
    f, b = moe.permute_time(4096, 2, 1024, 4, H100.device, C)
    assert f == pytest.approx(float(K.memory_bound_time(C.moe_permute_bytes_fwd * elems, H100.device, C)))
    assert b == pytest.approx(f)
    # it scales with the routed elements
    f2, _ = moe.permute_time(4096, 4, 1024, 4, H100.device, C)
    assert f2 > f
    # padded to capacity: 1.5x the routed elements
    f3, _ = moe.permute_time(4096, 2, 1024, 4, H100.device, C, capacity_factor=1.5)
    assert f3 == pytest.approx(float(K.memory_bound_time(C.moe_permute_bytes_fwd * 1.5 * elems, H100.device, C)))


# ---- routing imbalance -------------------------------------------------------------------
def test_routing_imbalance_extreme_value():
    # mu = 100 tokens x 2 local experts; expected max over 64 ranks: 1 + sqrt(2 ln 64 / 200)
    assert moe.routing_imbalance(100, 2, 64) == pytest.approx(1 + math.sqrt(2 * math.log(64) / 200))
    assert moe.routing_imbalance(100, 2, 1) == 1.0          # one rank: nothing to wait for
    assert moe.routing_imbalance(100, 2, 64, balanced=True) == 1.0
    # fewer tokens: worse balance; more ranks: worse balance
    assert moe.routing_imbalance(10, 2, 64) > moe.routing_imbalance(100, 2, 64) > 1
    assert moe.routing_imbalance(100, 2, 256) > moe.routing_imbalance(100, 2, 64)
    # no tokens does not divide by zero
    assert np.isfinite(moe.routing_imbalance(0, 2, 64))


# ---- grouped GEMM ------------------------------------------------------------------------
def test_expert_alignment():
    assert moe.expert_alignment("bf16", C) == 16                      # moe.row_alignment
    assert moe.expert_alignment("mxfp8", C) == 32                     # the MX block
    assert moe.expert_alignment("bf16", C.replace(moe_row_alignment=8)) == 8
    assert moe.expert_alignment("mxfp8", C.replace(moe_row_alignment=64)) == 64


@pytest.mark.parametrize("tok,rows", [(10, 16), (16, 16), (17, 32), (0, 16), (100.2, 112)])
def test_grouped_linear_pads_rows_to_the_alignment(tok, rows):
    got = moe.grouped_linear_fwd_bwd_time(tok, 2048, 1024, 4, H100.device, C, "bf16", 2.0)
    want = K.linear_fwd_bwd_time(np.asarray(float(rows)), 2048, 1024, 4, H100.device, C, "bf16", 2.0, 0.0)
    assert np.allclose(got, want, rtol=1e-12)


def test_grouped_linear_imbalance_multiplies_rows():
    got = moe.grouped_linear_fwd_bwd_time(64, 2048, 1024, 4, H100.device, C, "bf16", 2.0, imbalance=1.5)
    want = K.linear_fwd_bwd_time(np.asarray(96.0), 2048, 1024, 4, H100.device, C, "bf16", 2.0, 0.0)
    assert np.allclose(got, want, rtol=1e-12)


# ---- the all-to-all ----------------------------------------------------------------------
def test_remote_domains_per_token():
    # EP 64 over 8-GPU domains: 8 domains; each of the 7 others is hit by one of 8 experts
    # with probability 1 - (7/8)^8
    assert moe.remote_domains_per_token(8, 64, 8) == pytest.approx(7 * (1 - (7 / 8) ** 8))
    assert moe.remote_domains_per_token(1, 16, 8) == pytest.approx(0.5)   # 2 domains, k = 1
    assert moe.remote_domains_per_token(8, 8, 8) == 0.0                    # one domain
    assert moe.remote_domains_per_token(8, 4, 8) == 0.0                    # EP smaller than a domain


def test_plain_all_to_all_intra_and_inter_domain_split():
    P = 64 * MB  # routed copies one rank sends
    # EP 64, stride 1: 8 members per domain. 56/64 of the copies leave by NIC, 7/8 of the
    # rest... the NVLink part is every copy for the 7 other local ranks: P * 7/8 (minus nothing)
    t = moe.dispatch_time(P, 8, 64, 1, H100, C, dedup=False)
    t_out, t_in = P * 56 / 64 / SO, P * 7 / 8 / SU
    assert t_out > t_in
    assert t == pytest.approx(t_out + 10e-6 * 6)   # log2(64) = 6 network latency steps
    # EP 8 inside one domain: NVLink only, 3 NVLink latency steps
    t8 = moe.dispatch_time(P, 8, 8, 1, H100, C, dedup=False)
    assert t8 == pytest.approx(P * 7 / 8 / SU + 1e-6 * 3)
    # EP 1: no all-to-all
    assert moe.dispatch_time(P, 8, 1, 1, H100, C) == 0.0


def test_hierarchical_dispatch_sends_each_token_once_per_remote_domain():
    P = 64 * MB
    t = moe.dispatch_time(P, 8, 64, 1, H100, C, dedup=True)
    remote = 7 * (1 - (7 / 8) ** 8) / 8   # network share of the copies
    t_out, t_in = P * remote / SO, P * 7 / 8 / SU
    assert t == pytest.approx(max(t_out, t_in) + 10e-6 * 6)
    # dedup never sends more over the network than the plain all-to-all
    assert t < moe.dispatch_time(P, 8, 64, 1, H100, C, dedup=False)
    # with top-1 there is nothing to deduplicate: the same as the plain all-to-all's NIC share
    assert moe.dispatch_time(P, 1, 64, 1, H100, C, dedup=True) == pytest.approx(
        moe.dispatch_time(P, 1, 64, 1, H100, C, dedup=False))


def test_deepep_sends_a_token_once_per_destination_rank_over_nvlink():
    from math import comb

    # 128 experts over EP 8 (16 a rank), top-4: a rank is missed with C(112, 4) / C(128, 4)
    r = 8 * (1 - comb(112, 4) / comb(128, 4))
    assert float(moe.distinct_ranks_per_token(4, 128, 8)) == pytest.approx(r)
    assert 3.3 < r < 3.4
    assert float(moe.distinct_ranks_per_token(1, 128, 8)) == pytest.approx(1.0)
    assert float(moe.distinct_ranks_per_token(8, 128, 1)) == pytest.approx(1.0)
    assert float(moe.distinct_ranks_per_token(2, 4, 4)) == pytest.approx(2.0)   # one expert a rank
    P = 64 * MB
    # EP 8 inside one H100 node: NVLink carries r/k of the copies, 3 NVLink latency steps
    t = moe.dispatch_time(P, 4, 8, 1, H100, C, dedup=True, n_experts=128)
    assert t == pytest.approx(P * 7 / 8 / SU * r / 4 + 1e-6 * 3)
    # Megatron's alltoall dispatcher sends every copy
    assert moe.dispatch_time(P, 4, 8, 1, H100, C, dedup=False, n_experts=128) == pytest.approx(
        P * 7 / 8 / SU + 1e-6 * 3)


def test_dispatch_over_strided_ranks():
    # EP 16 with stride 8 (TP 8 inside the node): 1 member per domain, all copies but own leave
    P = 8 * MB
    t = moe.dispatch_time(P, 4, 16, 8, H100, C, dedup=False)
    assert t == pytest.approx(P * 15 / 16 / SO + 10e-6 * 4)


def test_all_to_all_time():
    P = 64 * MB
    # 16 ranks over two 8-GPU domains: 7/16 local, 8/16 remote, concurrently
    t = comm.all_to_all_time(P, 16, 1, H100, C)
    assert t == pytest.approx(max(P * 7 / 16 / SU, P * 8 / 16 / SO) + 10e-6 * 4)
    assert comm.all_to_all_time(P, 8, 1, H100, C) == pytest.approx(P * 7 / 8 / SU + 1e-6 * 3)
    assert comm.all_to_all_time(P, 1, 1, H100, C) == 0.0


# ---- ring collectives and point-to-point ------------------------------------------------
def test_members_per_domain():
    assert comm.members_per_domain(16, 1, 8) == 8
    assert comm.members_per_domain(4, 1, 8) == 4
    assert comm.members_per_domain(16, 8, 8) == 1        # one per node
    assert comm.members_per_domain(16, 2, 8) == 4
    assert comm.members_per_domain(6, 1, 8) == 2         # TP 6 straddles 8-GPU nodes: gcd(6, 8)
    assert comm.members_per_domain(6, 1, 8, carved=True) == 6
    assert comm.members_per_domain(3, 3, 8) == 1         # stride 3: gcd(9, 8) / 3 -> 1


def test_ring_all_reduce_hand_calculation():
    P = 100 * MB
    # 16 ranks, stride 1: 8 per domain, 2 domains; per byte (7/8)/SU + (1/2)/8/SO
    g = comm.ring_group(16, 1, H100, C)
    per_byte = 7 / 8 / SU + 0.5 / 8 / SO
    lat = 2 * 3 * 1e-6 + 2 * 1 * 10e-6
    assert g.time("all_reduce", P) == pytest.approx(2 * P * per_byte + lat)
    assert g.time("all_gather", P) == pytest.approx(P * per_byte + lat)
    assert g.time("reduce_scatter", P) == pytest.approx(P * per_byte + lat)
    # inside one domain: NVLink only
    g8 = comm.ring_group(8, 1, H100, C)
    assert g8.time("all_reduce", P) == pytest.approx(2 * P * 7 / 8 / SU + 2 * 3 * 1e-6)
    assert comm.ring_group(1, 1, H100, C).time("all_reduce", P) == 0.0


def test_ring_group_vectorised_matches_one_by_one():
    n = np.array([1, 2, 4, 8, 16, 32, 64, 6, 12] * 20)
    s = np.array([1, 8, 2, 1, 4, 1, 8, 3, 5] * 20)   # odd strides too (TP 3, TP 5 x CP)
    g = comm.ring_group(n, s, H100, C)   # > 64 entries, few distinct pairs: the indexed path
    for i in range(9):
        one = comm._ring_group(np.asarray(n[i]), np.asarray(s[i]), H100, C)
        assert g.per_byte_s[i] == pytest.approx(float(one.per_byte_s))
        assert g.latency_s[i] == pytest.approx(float(one.latency_s))


def test_p2p_time():
    P = 10 * MB
    # PP 4 with stride 2 (TP 2): 8 ranks, one node: NVLink
    assert comm.p2p_time(P, 2, 4, H100, C) == pytest.approx(1e-6 + P / SU)
    # PP 4 with stride 8: across nodes
    assert comm.p2p_time(P, 8, 4, H100, C) == pytest.approx(10e-6 + P / SO)


def test_moe_input_output_adds_by_hand():
    """Autograd's gradient sum over the MoE input's consumers, the shared experts' output add."""
    from carbonscaling.perf.moe import input_output_add_time

    dev = load_system("H100").device
    c = default_constants()
    rate = dev.hbm_gb_s * 1e9 * c.hbm_efficiency
    tokens, h = 2048.0, 4096                      # a TP-2 sequence-parallel slice of 4096 tokens
    one_add = tokens * h * (2 + 2 + 2) / rate      # read two BF16 tensors, write one
    f, b = input_output_add_time(tokens, h, False, dev, c)
    assert float(f) == 0.0                         # no shared experts: no forward add
    assert float(b) == pytest.approx(one_add, rel=1e-12)   # router + dispatcher: one gradient add
    f, b = input_output_add_time(tokens, h, True, dev, c)
    assert float(f) == pytest.approx(one_add, rel=1e-12)   # output + shared_expert_output
    assert float(b) == pytest.approx(2 * one_add, rel=1e-12)  # three consumers: two adds
    assert one_add * 1e6 == pytest.approx(17.7, abs=0.1)      # 50 MB at ~2.85 TB/s: about 18 us
