"""Megatron's ``moe_router_force_load_balancing`` routes on random logits: random loads, not even ones.

Megatron-Core ``TopKRouter.forward`` replaces the router logits by per-rank seeded normal noise
(``apply_random_logits``) before the top-k, so the dropless benchmark rows ("force-balanced" in
the table's footnote) see random top-k loads and the busiest EP rank waits; only the 25.09
token-drop rows, padded to each expert's capacity, are exactly even.
"""

import math

import numpy as np
import pytest

from carbonscaling.perf import moe
from carbonscaling.validation.throughput import describe_row

from helpers import bench_row


@pytest.mark.parametrize("key", [
    ("Qwen3_235B_a22B", "DGX-H100", "26.04", "FP8"),
    ("GPT OSS 120B", "DGX-B200", "26.04", "BF16"),
    ("DeepSeekV3", "DGX-GB300", "26.08", "MXFP8"),
])
def test_dropless_rows_route_randomly(key):
    row = bench_row(*key)
    assert "tokendrop" not in row["notes"]
    assert describe_row(row)[2].force_balanced_routing is False


def test_tokendrop_rows_are_exactly_even():
    row = bench_row("DeepSeekV3", "DGX-GB200", "25.09", "FP8", note="tokendrop")
    assert describe_row(row)[2].force_balanced_routing is True


def test_busiest_rank_factor_by_hand():
    # Qwen3-235B-A22B on H100, TP 2 (SP), EP 32: 2048 tokens x 8 copies per rank, 4 local experts of
    # 4096 rows: mu = 16384 routed copies per rank; the busiest of 32 carries mu + sqrt(2 mu ln 32).
    tok_e = 4096.0 * 8 * 32 / (128 * 2)
    assert tok_e == 4096.0
    got = float(moe.routing_imbalance(tok_e, 4, 32))
    assert got == pytest.approx(1.0 + math.sqrt(2.0 * math.log(32) / 16384.0), rel=1e-12)
    assert got == pytest.approx(1.02057, abs=1e-5)
    assert float(moe.routing_imbalance(tok_e, 4, 32, balanced=True)) == 1.0
    # more ranks, fewer copies each: a larger excess
    assert float(moe.routing_imbalance(512.0, 2, np.array(64))) > got
