"""Activation CPU offloading (perf/offload.py, data/host_link.yaml, cpu_offload_layers) against hand
calculations, Megatron-Core's rules, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from carbonscaling.cli import main
from carbonscaling.errors import InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf import offload, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.memory import activation_bytes_per_layer
from carbonscaling.scaling import ModelSpec
from carbonscaling.search import search

from helpers import layout_grids, write_file

C = default_constants()
GB200, H100 = load_system("GB200"), load_system("H100-SXM")
SMALL = ModelSpec(d_model=2048, n_layers=8, n_heads=16, n_kv_heads=8, head_dim=128, d_ff=8192, vocab=32000,
                  seq_len=4096, tokens=1e11, global_batch_tokens=64 * 4096, ffn_gated=True, name="small")


_grid = layout_grids(tp=1, pp=1, dp=8, microbatch=2, global_batch_sequences=64, recompute="none")


def test_host_links_are_the_sourced_ones():
    assert GB200.device.host_link_gb_s == 450 and load_system("GB300").device.host_link_gb_s == 450
    for name in ("H100-SXM", "H200", "B200", "B300"):
        assert load_system(name).device.host_link_gb_s == 64  # PCIe Gen5 x16, per direction
    assert load_system("B300").device.cell_flags["host_link_gb_s"] == "assumed"
    assert GB200.device.cell_flags["host_link_gb_s"] == "secondary"
    assert load_system("MI300X").device.host_link_gb_s is None


def test_offload_times_by_hand():
    # 9 GB per layer over 450 GB/s: 20 ms a copy; 3 of 6 layers: 60 ms each way, under the 4 layers between
    exposed, hidden = offload.offload_times(9e9, 450.0, 3, 6, 0.010, 0.020)
    assert float(exposed) == pytest.approx(0.060 - 4 * 0.010)  # forward exposes 20 ms, backward none
    assert float(hidden) == pytest.approx(2 * 0.060 - 0.020)
    # N = L - 1: one set on the GPU, nothing overlaps (Transformer Engine's warning)
    exposed, hidden = offload.offload_times(9e9, 450.0, 5, 6, 1.0, 1.0)
    assert float(exposed) == pytest.approx(2 * 5 * 0.020) and float(hidden) == 0.0
    # nothing offloaded, nothing moved
    assert offload.offload_times(9e9, 450.0, 0, 6, 0.01, 0.02) == (0.0, 0.0)
    np.testing.assert_allclose(offload.kept_layers(np.array([80.0]), 20), [60.0])


@pytest.mark.parametrize("n", [2, 6, 7])
def test_memory_keeps_l_minus_n_activation_sets(n):
    g = _grid()
    off, on = (step.evaluate(SMALL, GB200, g, TrainingOptions(precision="bf16", cpu_offload_layers=k), C)
               for k in (0, n))
    full = float(activation_bytes_per_layer(SMALL, g, TrainingOptions())[1][0])
    assert float(off.mem_activations_gb[0] - on.mem_activations_gb[0]) == pytest.approx(n * full / 1e9, rel=1e-9)


@pytest.mark.parametrize("system,n", [(GB200, 6), (H100, 6), (H100, 7), (H100, 2)])
def test_step_time_adds_the_exposed_copies_and_slows_compute_by_the_hidden_ones(system, n):
    g, o0 = _grid(), TrainingOptions()
    o = o0.model_copy(update={"cpu_offload_layers": n})
    off, on = step.evaluate(SMALL, system, g, o0, C), step.evaluate(SMALL, system, g, o, C)
    lt = step.per_layer(SMALL, system, g, o0, C)
    full = float(activation_bytes_per_layer(SMALL, g, o0)[1][0])
    t_x = full / (system.device.host_link_gb_s * 1e9)
    fwd, bwd = float(lt.time0[0] - lt.bwd0[0]), float(lt.bwd0[0])
    between = SMALL.n_layers - 2 if n <= SMALL.n_layers - 2 else 0
    exposed = max(0.0, n * t_x - between * fwd) + max(0.0, n * t_x - between * bwd)
    m = float(g.micro[0])
    assert float(on.offload_s[0]) == pytest.approx(m * exposed, rel=1e-9, abs=1e-12)
    assert float(on.overlap_slowdown_s[0] - off.overlap_slowdown_s[0]) == pytest.approx(
        C.overlap_compute_slowdown * m * (2 * n * t_x - exposed), rel=1e-9, abs=1e-12)
    assert float(on.step_time_s[0] - off.step_time_s[0]) == pytest.approx(
        m * exposed + C.overlap_compute_slowdown * m * (2 * n * t_x - exposed), rel=1e-6, abs=1e-12)
    if system is H100 and n == 7:
        assert exposed > 0  # a PCIe link and no set to overlap with: the copies show


def test_layouts_the_rules_exclude_get_no_offload():
    o = TrainingOptions(cpu_offload_layers=4)
    for kw in (dict(pp=2, dp=4), dict(recompute="full")):
        g = _grid(**kw)
        a, b = step.evaluate(SMALL, GB200, g, TrainingOptions(), C), step.evaluate(SMALL, GB200, g, o, C)
        assert float(a.step_time_s[0]) == float(b.step_time_s[0]) and float(b.offload_s[0]) == 0.0
        assert float(a.mem_total_gb[0]) == float(b.mem_total_gb[0])


def test_search_runs_offloading_at_pp1_without_recompute():
    res = search(SMALL, GB200, deadline_days=36500, options=TrainingOptions(cpu_offload_layers=4),
                 pinned={"devices": 8})
    assert res.layout.pp == 1 and res.layout.recompute == "none"


@pytest.mark.parametrize("pins,device,n,field", [
    ({"pp": 2}, "GB200", 4, "pp"),
    ({"recompute": "full"}, "GB200", 4, "recompute"),
    ({"recompute": "selective"}, "GB200", 4, "recompute"),
    ({}, "MI300X", 4, "cpu_offload_layers"),
    ({}, "GB200", 8, "cpu_offload_layers"),  # Megatron-Core: fewer than num_layers
])
def test_conflicts_are_one_line_input_errors(pins, device, n, field):
    with pytest.raises(InputError) as err:
        search(SMALL, load_system(device), deadline_days=36500, options=TrainingOptions(cpu_offload_layers=n),
               pinned={"devices": 8, **pins})
    assert err.value.field == field and "\n" not in str(err.value)
    if device == "MI300X":  # the message names the devices that can offload
        assert "H100-SXM" in str(err.value) and "GB200" in str(err.value)


def test_per_layer_cuda_graphs_conflict_full_iteration_and_eager_do_not():
    with pytest.raises(InputError) as err:
        search(SMALL, GB200, deadline_days=36500, pinned={"devices": 8},
               options=TrainingOptions(cpu_offload_layers=4, cuda_graph_scope=("attn",)))
    assert err.value.field == "cuda_graph_scope"
    for scope in ((), ("full_iteration",)):
        search(SMALL, GB200, deadline_days=36500, pinned={"devices": 8},
               options=TrainingOptions(cpu_offload_layers=4, cuda_graph_scope=scope))


MODEL_FILE = ("d_model: 2048\nn_layers: 8\nn_heads: 16\nn_kv_heads: 8\nvocab: 32000\nseq_len: 4096\n"
              "tokens: 1.0e+11\nffn_gated: true\nd_ff: 8192\n")


def test_cli_round_trip(tmp_path, capsys):
    f = write_file(tmp_path, "m.yaml", MODEL_FILE)
    base = ["estimate", "--model-file", str(f), "--device", "GB200", "--devices", "8", "--json"]
    assert main(base + ["--cpu-offload-layers", "6"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert main(base) == 0
    off = json.loads(capsys.readouterr().out)
    assert on["layout"]["pp"] == 1 and on["layout"]["recompute"] == "none"
    assert "offload_s" in on["breakdown"]["step"]
    assert on["breakdown"]["memory_per_device"]["activations_gb"] < off["breakdown"]["memory_per_device"][
        "activations_gb"] or on["layout"] != off["layout"]
    for extra in (["--cpu-offload-layers", "6", "--pp", "2"], ["--cpu-offload-layers", "-1"],
                  ["--cpu-offload-layers", "8"]):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("cpu_offload_layers" in err or "cpu-offload-layers" in err
                                              or "pp" in err)


def test_host_memory_per_gpu_is_the_sourced_one():
    """data/host_memory.yaml: the reference systems' MLPerf host memory / GPUs per node (review item 5)."""
    for name, gb in (("H100-SXM", 250), ("H200", 250), ("B200", 225), ("GB200", 467.5)):
        dev = load_system(name).device
        assert dev.host_dram_gb == gb and dev.cell_flags["host_dram_gb"] == "secondary", name
    assert load_system("B300").device.host_dram_gb is None  # no source found: not checked
    assert load_system("MI300X").device.host_dram_gb is None


@pytest.mark.parametrize("n", [2, 6, 7])
def test_offloaded_activations_must_fit_in_host_memory(n):
    """The n offloaded layers' activation sets (one microbatch in flight at PP 1) live in host memory:
    a layout whose sets exceed the GPU's share of it does not fit (it fitted before: ~180 GB per GPU of
    llama3.1-70b activations went to a host share of 250 GB unchecked, and more beyond it)."""
    g, o = _grid(), TrainingOptions(cpu_offload_layers=n)
    full = float(activation_bytes_per_layer(SMALL, g, TrainingOptions())[1][0])
    need_gb = n * full / 1e9
    for host_gb, fits in ((need_gb * 1.01, True), (need_gb * 0.99, False)):
        dev = H100.device.model_copy(update={"host_dram_gb": host_gb})
        res = step.evaluate(SMALL, H100.model_copy(update={"device": dev}), g, o, C)
        assert bool(res.fits[0]) is fits, host_gb


def test_a_host_memory_refusal_says_so(capsys):
    code = main(["estimate", "-m", "llama3.1-70b", "-d", "H100-SXM", "--cpu-offload-layers", "79", "--tp", "1",
                 "--cp", "1", "--microbatch", "8", "--no-uncertainty"])
    err = capsys.readouterr().err
    assert code == 3 and "79 offloaded layers' activations in 250 GB of host memory per GPU" in err
    assert "PP=80" not in err and "full recompute" not in err  # offloading runs at PP 1 without recompute
