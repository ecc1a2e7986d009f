"""The estimator's own predictor ("ours") for published runs, in two modes.

* ``pinned``: the run's device count and every layout part it reports (``tp, pp, dp,
  ep, zero_stage`` columns plus ``layout_pins``) are fixed; the search picks only what
  is not reported (microbatch, interleaving, ...) at that device count, fastest first.
  Only time is predicted.
* ``searched``: our search chooses the device count and the whole layout, as the
  papers do: the deadline is the run's reported wall clock (``duration_days``, else
  ``device_hours / n_devices / 24``, derived), so the duration is not scored (it is
  returned as ``search_duration_days``); device count and device-hours are. A run that
  reports neither keeps its device count and only the layout is searched.

In both modes the training recipe is the run's: architecture (``model_key``, a catalog
name or model YAML), tokens (``tokens``, else ``tokens_assumed``), sequence length,
global batch, precision, activation recompute (when reported) and the software options
(FlashAttention, sequence parallelism, overlap of gradient reduction and of TP/EP
communication; empty cells take the estimator's defaults). A run without a token count
(a throughput benchmark) gets utilization and throughput only.

Utilization: ``mfu`` counts model FLOPs as the run reports them (``mfu_convention``; empty:
``palm``, :data:`REPORTED_MFU_CONVENTION`: ``6 N`` without the input embedding plus attention
counted in full, the form of Narayanan et al. 2021 eq. 3, BLOOM's counter and PaLM
Appendix B; every shipped utilization row ties its embeddings, so this equals the papers'
``6 N_active`` count for them); ``hfu`` adds the FLOPs the chosen recompute repeats (full: every layer's
forward matmuls and attention; selective: the attention score/value matmuls), the
convention of Megatron-LM's and BLOOM's counters. ``tflops_per_device`` and
``hfu_tflops_per_device`` are the same rates in TFLOP/s.

Energy and carbon follow the run's accounting (:mod:`.accounting`). An infeasible run
(no layout fits, deadline unreachable) raises :class:`~carbonscaling.errors.InfeasibleError`,
which the harness records as that run's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ..errors import InputError
from ..perf.constants import PerfConstants
from ..perf.layout import RECOMPUTE_MODES, TrainingOptions
from ..goodput import expected_goodput
from ..mfu import model_flops_per_token
from ..power import busy_share
from ..serialize import layout_label, layout_record
from .accounting import carbon_predictions
from .runs import OPTION_COLUMNS, PublishedRun

Mode = Literal["pinned", "searched"]
MODES: tuple[str, ...] = ("pinned", "searched")
_PRECISIONS = ("fp16", "bf16", "fp8")  # the names published_runs.csv uses (formats.PRECISIONS has all)
#: How a published run's utilization counts model FLOPs when its ``mfu_convention`` is empty.
REPORTED_MFU_CONVENTION = "palm"


def run_precision(run: PublishedRun) -> str:
    """``"fp16 mixed"`` -> ``fp16``; empty -> ``bf16`` (the estimator's default)."""
    text = (run.precision or "").lower()
    found = [p for p in _PRECISIONS if p in text]
    if not text:
        return "bf16"
    if len(found) != 1:
        raise InputError(f"runs[{run.run_id}].precision",
                         f"must name one of {', '.join(_PRECISIONS)}, got {run.precision!r}")
    return found[0]


def run_model(run: PublishedRun):
    """The run's architecture with the run's tokens, sequence length and global batch."""
    from ..scaling import resolve_model

    if not run.model_key:
        raise InputError(f"runs[{run.run_id}].model_key",
                         "ours needs the run's architecture: a catalog model name or a model YAML path")
    spec = resolve_model(run.model_key)
    update: dict[str, Any] = {}
    if run.seq_len is not None:
        update["seq_len"] = run.seq_len
    if run.training_tokens is not None:
        update["tokens"] = float(run.training_tokens)
    if run.global_batch_tokens is not None:
        update["global_batch_tokens"] = float(run.global_batch_tokens)
    return spec.model_copy(update=update) if update else spec


def run_options(run: PublishedRun, precision: str | None = None) -> TrainingOptions:
    """Software options of the run; empty cells take :class:`TrainingOptions` defaults."""
    # pipeline_balance: a published run is split as it ran (no custom layout; Megatron's classic splits)
    opts: dict[str, Any] = {"precision": precision or run_precision(run),
                            "mfu_convention": run.mfu_convention or REPORTED_MFU_CONVENTION,
                            "pipeline_balance": "layers"}
    for name in OPTION_COLUMNS:
        if getattr(run, name) is not None:
            opts[name] = getattr(run, name)
    return TrainingOptions(**opts)


def deadline_days(run: PublishedRun) -> float | None:
    """The run's wall clock: reported ``duration_days``, else ``device_hours / n_devices / 24``."""
    if run.duration_days is not None:
        return run.duration_days
    if run.device_hours is not None and run.devices:
        return run.device_hours / run.devices / 24.0
    return None


def run_pins(run: PublishedRun, mode: Mode, model) -> dict[str, Any]:
    """What the search may not change for ``run`` in ``mode`` (see module doc)."""
    pins: dict[str, Any] = {"global_batch": model.batch_sequences}
    if run.recompute is not None:
        pins["recompute"] = run.recompute
    if mode == "pinned":
        if run.devices is None:
            raise InputError(f"runs[{run.run_id}].n_devices", "pinned mode needs the reported device count")
        pins.update(run.pins, devices=run.devices)
    elif deadline_days(run) is None or run.training_tokens is None:
        if run.devices is None:
            raise InputError(f"runs[{run.run_id}].n_devices",
                             "searched mode needs a duration, device-hours or a device count")
        pins["devices"] = run.devices
    return pins


# ---- FLOP counts ---------------------------------------------------------------------
def matmul_params_active(model) -> float:
    """Weights of the transformer layers' matmuls one token passes through (no norms, no embeddings)."""
    moe = (model.top_k + model.n_shared_experts) * model.expert_params + model.router_params
    return float(model.n_layers * model.attn_params_per_layer + model.n_dense_layers * model.dense_ffn_params
                 + model.n_moe_layers * moe)


def recompute_flops_per_token(model, recompute: str) -> float:
    """FLOPs per token that activation recompute repeats: full = the layers' forward pass
    (``2 x`` matmul weights + attention ``4 L s d_attn``); selective = attention only."""
    if recompute not in RECOMPUTE_MODES:
        raise InputError("recompute", f"must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    attention = model.attention_flops_per_token / 3.0  # the forward third of forward + backward
    if recompute == "full":
        return 2.0 * matmul_params_active(model) + attention
    return attention if recompute == "selective" else 0.0


def megatron_flops_per_iteration(batch: float, seq: float, layers: float, hidden: float, vocab: float) -> float:
    """Narayanan et al. 2021 eq. 3 (full recompute): ``96 B s L h^2 (1 + s/(6h) + V/(16 L h))``."""
    return 96.0 * batch * seq * layers * hidden ** 2 * (1 + seq / (6 * hidden) + vocab / (16 * layers * hidden))


# ---- prediction ------------------------------------------------------------------------
def run_spec(run: PublishedRun, mode: Mode = "pinned") -> tuple[Any, dict[str, Any]]:
    """The :class:`~carbonscaling.specs.RunSpec` of ``run`` in ``mode`` (model, device, recipe,
    pins, deadline), and its pins."""
    from ..specs import HardwareSpec, LayoutPins, RunSpec, SearchSettings, build

    if mode not in MODES:
        raise InputError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    model = run_model(run)
    pins = run_pins(run, mode, model)
    deadline = deadline_days(run) if "devices" not in pins else 90.0
    spec = RunSpec(model=model, hardware=HardwareSpec(device=run.device_key or run.accelerator),
                   pins=build(LayoutPins, pins), recipe=run_options(run),
                   search=build(SearchSettings, {"deadline_days": deadline}))
    return spec, pins


def run_search(run: PublishedRun, mode: Mode = "pinned", consts: PerfConstants | None = None):
    """``(model, system, SearchResult, pins)`` of our search for ``run`` in ``mode``."""
    from ..chain import search_run

    spec, pins = run_spec(run, mode)
    model, system, res = search_run(spec, consts=consts)
    return model, system, res, pins


def predict_run(run: PublishedRun, mode: Mode = "pinned", consts: PerfConstants | None = None) -> dict[str, Any]:
    """Our predictions for ``run``, keyed as the harness expects (see module doc)."""
    model, system, res, pins = run_search(run, mode, consts)
    lay = res.layout
    tokens_per_step = lay.global_batch_sequences * model.seq_len
    peak = system.device.peak_flops(res.options.gemm_precision)  # as the search's MFU (FP8 runs: FP8 peak)
    per_token = model_flops_per_token(model, res.options.mfu_convention)  # the run's own count
    mfu = per_token * tokens_per_step / (float(res.step.step_time_s) * lay.devices * peak)
    hfu = mfu * (1.0 + recompute_flops_per_token(model, lay.recompute) / per_token)
    peak_tf = peak / 1e12
    out: dict[str, Any] = {
        "mfu": mfu, "hfu": hfu, "tflops_per_device": mfu * peak_tf, "hfu_tflops_per_device": hfu * peak_tf,
        "step_time_s": float(res.step.step_time_s),
        **{k: v for k, v in layout_record(lay).items() if k not in ("recompute", "global_batch_sequences",
                                                                     "microbatches")},
        "layout": layout_label(lay),
    }
    if "devices" not in pins:  # the search chose the device count
        out["n_devices"] = lay.devices
    if run.training_tokens is not None:
        hours = lay.devices * res.duration_s / 3600.0
        # With the reported wall clock as the deadline, the duration is not a prediction: unscored.
        out["search_duration_days" if "devices" not in pins else "duration_days"] = res.duration_s / 86400.0
        out["device_hours"] = hours  # steady state; goodput-adjusted separately (unscored key)
        out["busy"] = float(busy_share(res.step))
        out["goodput"] = expected_goodput(lay.devices)
        out["device_hours_goodput"] = hours / out["goodput"]
        out.update(carbon_predictions(run, system, lay.devices, hours, mfu, busy=out["busy"]))
    return out


def ours_predictor(mode: Mode = "pinned", consts: PerfConstants | None = None) -> Callable[[PublishedRun], dict]:
    """A predictor for :func:`carbonscaling.validation.harness.evaluate`."""
    if mode not in MODES:
        raise InputError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")

    def predict(run: PublishedRun) -> dict[str, Any]:
        return predict_run(run, mode, consts)

    predict.__name__ = f"ours_{mode}"
    return predict

