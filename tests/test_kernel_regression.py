"""A release that shipped a slow kernel is described as it ran (``fused_mlp_dgrad_slowdown``).

Megatron-Bridge's 26.06.01 gpt-oss rows carry the source's footnote "Performance regression in GPT-OSS
120B pre-training is a known issue (cudnn-frontend issue 256)": the fused grouped MLP's dGLU + dbias
backward kernel ran 1362.768 us instead of 155.632 us on the issue's SM100 shape (cudnn-frontend pull
request 322). The recipe data name the release and the factor; the step adds ``factor - 1`` times
FC2's data-gradient grouped GEMM to every MoE layer's backward, on the fused path only.
"""

from __future__ import annotations

import copy

import pytest

from carbonscaling.errors import InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf import moe
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.sublayers import _busiest_rank, _routed_experts
from carbonscaling._data import load_yaml
from carbonscaling.scaling import named_model
from carbonscaling.validation import recipes
from carbonscaling.validation.throughput import describe_row

from helpers import bench_rows, one_layout

C = default_constants()
GB200 = load_system("GB200")


def _row(system, container, precision="MXFP8"):
    (row,) = bench_rows("GPT OSS 120B", system, container, precision)
    return row


def test_the_factor_is_the_kernels_time_over_its_fixed_time():
    (entry,) = [e for e in recipes.recipe_entries() if e["fact"] == "kernel_regression"]
    assert entry["sets"]["fused_mlp_dgrad_slowdown"] == pytest.approx(1362.768 / 155.632, abs=5e-4)
    assert entry["containers"] == ["26.06.01"]


def test_regression_time_by_hand():
    assert moe.dglu_kernel_regression_time(2e-3, 8.756, "fused") == pytest.approx(2e-3 * 7.756)
    assert moe.dglu_kernel_regression_time(2e-3, 8.756, "loop") == 0.0  # the per-expert loop runs cuBLAS GEMMs
    assert moe.dglu_kernel_regression_time(2e-3, 1.0, "fused") == 0.0


@pytest.mark.parametrize("grouped_gemm", ["fused", "loop"])
def test_the_moe_backward_grows_by_the_fc2_data_gradient_times_the_factor_less_one(grouped_gemm):
    m = named_model("gpt-oss-120b")
    g = one_layout(tp=1, pp=1, dp=64, ep=64, microbatch=4, zero=1, global_batch_sequences=1280)
    healthy = TrainingOptions(precision="mxfp8", moe_grouped_gemm=grouped_gemm, force_balanced_routing=True)
    slow = healthy.model_copy(update={"fused_mlp_dgrad_slowdown": 8.756})
    f0, b0, w0 = _routed_experts(m, GB200, g, healthy, C)
    f1, b1, w1 = _routed_experts(m, GB200, g, slow, C)
    tok_e = moe.tokens_per_expert(g.tokens(m.seq_len), m.top_k, m.n_experts, g.ep, g.etp, g.tp, 1.0)
    _, fc2_b = moe.grouped_linear_fwd_bwd_time(tok_e, m.d_model, m.d_expert, m.n_experts / g.ep, GB200.device, C,
                                               "mxfp8", healthy.gemm_input_bytes,
                                               imbalance=_busiest_rank(m, g, healthy, tok_e))
    assert float(f1[0]) == float(f0[0]) and float(w1[0]) == float(w0[0])  # forward and weight gradients as they were
    expected = 7.756 * 0.5 * float(fc2_b[0]) if grouped_gemm == "fused" else 0.0
    assert float(b1[0] - b0[0]) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("system", ["DGX-GB200", "DGX-GB300"])
def test_only_the_named_release_runs_the_slow_kernel(system):
    for container, factor in (("26.06", 1.0), ("26.06.01", 8.756), ("26.08", 1.0)):
        _, _, options, _, assumed = describe_row(_row(system, container))
        assert options.fused_mlp_dgrad_slowdown == factor, container
        assert any("cudnn-frontend issue 256" in a for a in assumed) == (factor > 1), container
    # the BF16 rows of the releases around it run the per-expert loop and no such factor
    _, _, options, _, _ = describe_row(_row(system, "26.04.01", "BF16"))
    assert options.fused_mlp_dgrad_slowdown == 1.0


def test_the_slow_release_is_predicted_slower_by_about_the_kernels_share():
    from carbonscaling.validation.throughput import predict_row

    healthy, slow = predict_row(_row("DGX-GB200", "26.06")), predict_row(_row("DGX-GB200", "26.06.01"))
    # same layout and recipe otherwise: the difference is the regression alone, a real but partial share of
    # the measured 1.65 s between the two releases
    assert healthy["layout"] == slow["layout"]
    assert 0.5 < slow["predicted_step_s"] - healthy["predicted_step_s"] < 1.65


@pytest.mark.parametrize("value", [0.5, 101.0])
def test_the_factor_is_a_checked_option(value):
    with pytest.raises(ValueError) as err:  # pydantic's ValidationError; the API and CLI turn it into one line
        TrainingOptions(fused_mlp_dgrad_slowdown=value)
    assert "fused_mlp_dgrad_slowdown" in str(err.value)


def _data_with(change):
    data = copy.deepcopy(load_yaml(recipes.DATA_FILE))
    i = next(i for i, e in enumerate(data["recipes"]) if e["fact"] == "kernel_regression")
    data["recipes"][i].update(change)
    return data, i


@pytest.mark.parametrize("change, field, words", [
    ({"containers": ["26.6.1"]}, "containers", "'YY.MM' or 'YY.MM.PP'"),
    ({"containers": []}, "containers", "must list the releases"),
    ({"first_container": "26.06"}, "first_container", "must be null"),
    ({"sets": {"fused_mlp_dgrad_slowdown": 0.9}}, "sets.fused_mlp_dgrad_slowdown", "from 1 to 100"),
    ({"note": ""}, "note", "must say what the row reports"),
    ({"source": [{"repo": "NVIDIA/cudnn-frontend", "issue": 256, "pull": 322}]}, "source[0]", "one issue or pull"),
    ({"source": [{"repo": "NVIDIA/cudnn-frontend", "issue": "256"}]}, "source[0]", "one issue or pull"),
])
def test_a_broken_regression_entry_is_one_line_naming_its_field(change, field, words):
    data, i = _data_with(change)
    with pytest.raises(InputError) as err:
        recipes.check_recipes(data)
    message = str(err.value)
    assert "\n" not in message and f"recipes[{i}] (kernel_regression GPT OSS 120B).{field}: " in message
    assert words in message


def test_other_facts_take_no_release_list():
    data = copy.deepcopy(load_yaml(recipes.DATA_FILE))
    i = next(i for i, e in enumerate(data["recipes"]) if e["fact"] == "offload")
    data["recipes"][i]["containers"] = ["26.02"]
    with pytest.raises(InputError, match=r"\.containers: must be absent"):
        recipes.check_recipes(data)
