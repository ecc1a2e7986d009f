"""The abbreviations and terms of the reports, defined once.

:data:`TERMS` is the one list: ``report.md`` of ``carbonscaling validate`` and of
``carbonscaling paper`` end with the entries they use (:func:`markdown_section`),
``carbonscaling glossary`` prints it, and docs/glossary.md is generated from it
(``python -m carbonscaling.glossary --write-docs``; a test fails when it is stale).
The tests also scan the rendered reports for upper-case tokens that are neither a term
here nor a name (:data:`NAMES`, the model and device catalogs).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path


_B, _E = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"  # word edges; ``_`` separates, as in ``median_ape``


@dataclass(frozen=True)
class Term:
    """One entry: the term as written, its meaning, and how to find it in a text.

    ``nocase``: also found in lower case, as the reports' column keys spell it (``mfu``,
    ``llmc err``, ``tp``); ``pattern``: a regex of its own.
    """

    term: str
    meaning: str
    pattern: str = ""
    nocase: bool = False

    def regex(self) -> re.Pattern:
        """Where the term occurs: its own pattern, else the term as a word (layout sizes such
        as ``TP8`` and plurals such as ``GPUs`` included)."""
        if self.pattern:
            return re.compile(self.pattern)
        return re.compile(rf"{_B}{re.escape(self.term)}(?:\d+|s)?{_E}", re.IGNORECASE if self.nocase else 0)


def _t(term: str, meaning: str, pattern: str = "", nocase: bool = False) -> Term:
    return Term(term, meaning, pattern, nocase)


TERMS: tuple[Term, ...] = (
    # ---- parallel layouts (Megatron-Core names) ----
    _t("TP", "Tensor parallelism: each layer's weight matrices split over TP devices (Megatron-LM); `TP8` = "
             "8-way.", nocase=True),
    _t("PP", "Pipeline parallelism: the layers split into PP consecutive stages.", nocase=True),
    _t("VP", "Virtual pipeline stages per device (interleaved 1F1B schedule; Megatron-Core's "
             "`virtual_pipeline_model_parallel_size`, the papers' interleave).", nocase=True),
    _t("CP", "Context parallelism: each sequence split over CP devices, K/V exchanged in a ring.", nocase=True),
    _t("EP", "Expert parallelism: the experts of an MoE layer split over EP devices.", nocase=True),
    _t("ETP", "Expert tensor parallelism: each expert's weights split over ETP devices (default: TP).", nocase=True),
    _t("DP", "Data parallelism: model replicas, each processing part of the global batch.", nocase=True),
    _t("DDP", "Distributed data parallel: replicas all-reduce their gradients, nothing sharded (ZeRO-0)."),
    _t("FSDP", "Fully sharded data parallel: weights, gradients and optimizer state sharded over a group of DP "
               "ranks (ZeRO-3 within the group); `FSDP64` = groups of 64.", nocase=True),
    _t("ZeRO", "Zero Redundancy Optimizer (Rajbhandari et al. 2020): stage 1 shards the optimizer state over DP, "
               "2 also the gradients, 3 also the weights; 4 here = hierarchical ZeRO-3 (within the node).",
       rf"{_B}ZeRO(?:-\d)?{_E}"),
    _t("mb", "Microbatch: sequences one pipeline processes per forward/backward pass (`mb4`).", rf"{_B}mb\d+\b"),
    _t("rc", "Recompute (activation checkpointing) mode: none, selective (attention only) or full.",
       rf"{_B}rc="),
    _t("1F1B", "One-forward-one-backward pipeline schedule (Narayanan et al. 2021)."),
    _t("LinS", "Flexible sharding (Chen et al. 2024, \"LinS: Reducing Communication Overhead of ZeRO\"): ZeRO-3 "
               "collectives kept inside the node."),
    # ---- model ----
    _t("LLM", "Large language model."),
    _t("LM", "Language model (as in Megatron-LM).", rf"{_B}LM{_E}"),
    _t("GPT", "Generative pre-trained transformer: a decoder-only transformer."),
    _t("MoE", "Mixture of experts: FFN layers made of experts, each token routed to top-k of them."),
    _t("FFN", "Feed-forward network (the MLP block of a transformer layer)."),
    _t("MLP", "Multi-layer perceptron: the feed-forward block of a layer (an expert, in an MoE layer)."),
    _t("MTP", "Multi-token prediction modules (DeepSeek-V3)."),
    _t("MLA", "Multi-head latent attention (DeepSeek-V2/V3): low-rank compressed K/V."),
    _t("GQA", "Grouped-query attention: fewer K/V heads than query heads."),
    _t("LoRA", "Low-rank adaptation: fine-tuning through small low-rank weight updates (MLPerf's Llama 2 70B task)."),
    _t("QAT", "Quantization-aware training (the papers' 8-bit compute, memory and communication option)."),
    _t("GEMM", "General matrix multiply: the dense matrix products that dominate training."),
    _t("CUDA", "NVIDIA's GPU programming platform; a CUDA graph replays a captured sequence of kernels with "
               "one launch, so the host does not launch each kernel."),
    _t("cuBLAS", "NVIDIA's CUDA library of dense linear algebra (BLAS) kernels, GEMMs included."),
    _t("cuDNN", "NVIDIA's CUDA library of deep-learning kernels: fused attention and, through its frontend's "
                "kernels, fused grouped GEMMs of MoE layers."),
    _t("FLOPs", "Floating-point operations (FLOP/s: per second).", rf"{_B}FLOP(?:s|/s)?{_E}"),
    _t("TFLOP", "10^12 floating-point operations (TFLOP/s per device: throughput).",
       rf"{_B}TFLOP(?:s|/s)?{_E}"),
    # ---- number formats ----
    _t("BF16", "bfloat16: 16-bit floating point with FP32's exponent range."),
    _t("FP16", "IEEE half precision (16-bit), with loss scaling."),
    _t("FP32", "IEEE single precision (32-bit)."),
    _t("FP8", "8-bit floating point (E4M3/E5M2); `FP8-CS`: per-tensor current scaling, `FP8-MX`: MXFP8.",
       rf"{_B}FP8(?:-CS|-MX|-DS)?{_E}"),
    _t("MXFP8", "OCP microscaling FP8: one shared scale per 32-element block."),
    _t("NVFP4", "NVIDIA's 4-bit floating point with one scale per 16-element block (Blackwell)."),
    _t("MXFP4", "OCP microscaling FP4: one shared scale per 32-element block."),
    # ---- metrics ----
    _t("MFU", "Model FLOPs utilization: the model's FLOPs per second (no recompute) over the devices' peak. "
              "Counted as Megatron-LM does by default (6 x non-embedding matmul weights incl. the logit layer, "
              "causal attention as half); mfu_convention palm (PaLM, torchtitan) or cs-paper (the papers) "
              "otherwise.", nocase=True),
    _t("HFU", "Hardware FLOPs utilization: as MFU, but counting recomputed FLOPs too (Korthikanti et al. 2022).",
       nocase=True),
    _t("MAPE", "Mean absolute percentage error: mean of |predicted - reported| / reported (a fraction).", nocase=True),
    _t("APE", "Absolute percentage error of one run: |predicted - reported| / reported.", nocase=True),
    _t("R^2", "Coefficient of determination, 1 - SS_res / SS_tot (in log space where stated).", rf"R\^2|{_B}[Rr]2{_E}"),
    _t("LOO", "Leave-one-out: the run being predicted is dropped from the fit.", nocase=True),
    _t("reg", "The regression baseline: least squares of log device-hours on log training FLOPs."),
    _t("LLMC", "LLMCarbon (Faiz et al. 2024), the end-to-end carbon model used as a baseline.",
       rf"{_B}(?:LLMC(?:arbon)?|llmc){_E}"),
    _t("p5/p50/p95", "5th, 50th (median) and 95th percentiles of the Monte-Carlo samples.",
       rf"{_B}p(?:5|50|95){_E}"),
    _t("goodput", "Share of wall clock spent on useful training, after interruptions, restarts and checkpoints.",
       rf"{_B}goodput{_E}"),
    # ---- energy and carbon ----
    _t("PUE", "Power usage effectiveness: facility energy over IT energy (>= 1)."),
    _t("CI", "Carbon intensity of the electricity, gCO2e/kWh."),
    _t("TDP", "Thermal design power: a device's rated power (W)."),
    _t("CO2e", "CO2-equivalent: greenhouse gases counted as the CO2 of equal warming; tCO2e = tonnes.",
       rf"{_B}(?:t|kg|g)?CO(?:2|₂)e{_E}"),
    _t("CO", "Training carbon, in tCO2e (the papers' `loss = k CO^-alpha`).", rf"{_B}CO{_E}"),
    _t("CPA", "Carbon per area: embodied kgCO2e per cm2 of logic die (and per GB of memory) (CarbonScaling v1 "
              "Tables 3-4)."),
    _t("EUV", "Extreme-ultraviolet lithography: v2's case where carbon per area grows 10 % a year."),
    _t("kWh", "Kilowatt-hour: 3.6 MJ of energy.", rf"{_B}kWh{_E}"),
    _t("busy share", "Share of a step the accelerators compute rather than wait (exposed communication, pipeline "
                     "bubble); drives their power under the measured power model (`carbon --utilization`).",
       rf"{_B}busy share{_E}"),
    _t("device slot", "One accelerator's share of its node: its own power plus its share of host, power supplies, "
                      "fans and switch ports (`W per device slot`).", rf"{_B}device slot{_E}"),
    _t("location-based", "Scope 2 carbon at the average grid intensity where the electricity is used (GHG Protocol).",
       rf"{_B}location-based{_E}"),
    _t("market-based", "Scope 2 carbon at the contracts' intensity (certificates, PPAs) for covered use and the "
                       "residual mix for the rest (GHG Protocol).", rf"{_B}market-based{_E}"),
    _t("WUE", "Water usage effectiveness: litres of on-site water consumed per kWh of IT energy (The Green Grid)."),
    _t("EWIF", "Energy water intensity factor: litres of water consumed off-site to generate one kWh."),
    # ---- hardware ----
    _t("GPU", "Graphics processing unit, here any accelerator of that kind."),
    _t("TPU", "Google's tensor processing unit."),
    _t("CPU", "Central processing unit (host processor; CPU-s: CPU-seconds)."),
    _t("HBM", "High-bandwidth memory stacked beside the accelerator die."),
    _t("DRAM", "Host main memory."),
    _t("SSD", "Solid-state drive (host storage)."),
    _t("GB", "Gigabyte, 10^9 bytes (vendors' HBM \"GB\" are GiB, 2^30 bytes)."),
    _t("NVLink", "NVIDIA's scale-up interconnect between the GPUs of a node or rack."),
    _t("ICI", "TPU inter-chip interconnect (the scale-up network of a pod)."),
    _t("InfiniBand", "The scale-out network between nodes (or RoCE: RDMA over converged Ethernet)."),
    _t("NIC", "Network interface card."),
    _t("DGX", "NVIDIA's reference GPU server and system (DGX-H100, DGX-GB200, ...)."),
    # ---- sources and formats ----
    _t("MLPerf", "MLCommons' benchmark suite; its Training results include metered power rows."),
    _t("UTC", "Coordinated Universal Time."),
    _t("CSV", "Comma-separated values (a table as text)."),
    _t("JSON", "JavaScript Object Notation (the `--json` output)."),
    _t("YAML", "The text format of the scenario, model and device files."),
    _t("PNG", "Portable Network Graphics (figures; SVG with `--svg`)."),
    _t("SVG", "Scalable Vector Graphics."),
)

#: Proper names in the reports that are not abbreviations to define (beyond the model and device
#: catalogs): papers, frameworks, vendors, model families as the Megatron-Bridge table names them,
#: verdict words and command-line placeholders.
NAMES: tuple[str, ...] = (
    "CarbonScaling", "LLMCarbon", "DeepSeek", "DeepSeekV3", "LLAMA3", "GPT OSS", "BLOOM", "PaLM", "FlashAttention",
    "Megatron-Core", "Megatron-Bridge", "NeMo", "NVIDIA", "OpenAI", "DualPipe", "DeepEP", "HybridEP", "CodeCarbon",
    "DISAGREES", "FILE", "DIR", "NAME", "PATH", "README", "InfeasibleError",
)


def _row(t: Term) -> str:
    meaning = t.meaning.replace("|", "\\|")  # a Markdown table cell
    return f"| {t.term} | {meaning} |"


def terms_used(text: str) -> list[Term]:
    """The terms of :data:`TERMS` that occur in ``text`` (code spans included), in list order."""
    return [t for t in TERMS if t.regex().search(text)]


def markdown_section(text: str, heading: str = "## Glossary") -> str:
    """A glossary section for a Markdown ``text``: the terms it uses, as a table."""
    rows = [_row(t) for t in terms_used(text)]
    if not rows:
        return ""
    return "\n".join([heading, "", "Abbreviations and terms used above (all of them: `carbonscaling glossary`, "
                                    "docs/glossary.md).", "", "| term | meaning |", "|---|---|", *rows]) + "\n"


def undefined_tokens(text: str, names: tuple[str, ...] = ()) -> set[str]:
    """Upper-case tokens of ``text`` (two or more capitals) that are neither a term nor a name.

    Terms and names are removed first (longest first), then code spans; what remains of
    word that starts with a letter and has two capitals once trailing digits are stripped
    (``H100`` has one capital and is not a token) is returned.
    """
    text = re.sub(r"`[^`]*`", " ", text)
    for name in sorted({*NAMES, *names}, key=len, reverse=True):
        text = re.sub(rf"{_B}{re.escape(name)}[\w.]*", " ", text)  # with a size suffix: LLAMA3_70B
    for t in TERMS:
        text = t.regex().sub(" ", text)
    found = set()
    for tok in re.findall(r"\b[A-Za-z][A-Za-z0-9]*", text):  # not formulas such as 6ND
        core = tok.rstrip("0123456789")
        if sum(c.isupper() for c in core) >= 2:
            found.add(core)
    return found


# ---- docs/glossary.md ----------------------------------------------------------------------
def docs_text() -> str:
    """docs/glossary.md, generated from :data:`TERMS`."""
    head = ["# Glossary", "", "Every abbreviation and term the reports use, generated from `carbonscaling.glossary."
            "TERMS` (`python -m carbonscaling.glossary --write-docs`). `carbonscaling glossary` prints it; "
            "`report.md` of `validate` and `paper` ends with the entries it uses.", "",
            "| term | meaning |", "|---|---|"]
    return "\n".join(head + [_row(t) for t in TERMS]) + "\n"


def docs_path() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "glossary.md"


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - a maintainer's command
    args = sys.argv[1:] if argv is None else argv
    if "--write-docs" in args:
        docs_path().write_text(docs_text(), encoding="utf-8")
        print(f"wrote {docs_path()}")
    else:
        sys.stdout.write(docs_text())


if __name__ == "__main__":  # pragma: no cover
    main()
