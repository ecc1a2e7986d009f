"""NVLink domain of a Megatron-Bridge job on NVL72 racks: the launcher's default Slurm segment
(scripts/performance/utils/executors.py @023219e), hand-computed."""

from __future__ import annotations

import pytest

from carbonscaling.hardware import load_system
from carbonscaling.validation.throughput import describe_row, pretrain_rows, segment_domain


@pytest.mark.parametrize("gpus, domain", [(8, 8), (64, 64), (72, 72), (128, 64), (256, 64), (512, 64),
                                          (144, 72), (96, 48), (4, 4)])
def test_segment_of_nvl72_jobs(gpus, domain):
    # nodes <= 18: one segment of all nodes; else the largest divisor of the node count up to 18
    for name in ("GB200", "GB300"):
        assert segment_domain(gpus, load_system(name)) == domain


def test_eight_gpu_islands_keep_their_domain():
    for name in ("H100-SXM", "B200", "B300"):
        assert segment_domain(256, load_system(name)) == 8


def test_described_rows_carry_the_segment_domain():
    seen = set()
    for row in pretrain_rows():
        if row["system"] in ("DGX-GB200", "DGX-GB300") and int(row["gpus"]) == 256:
            system = describe_row(row)[1]
            seen.add((system.scale_up_domain, system.devices_per_node))
    assert seen == {(64, 4)}  # 64 nodes -> segments of 16 trays, never the rack's 72 GPUs
