"""What the kernel probe measures, and how it writes it down (no torch needed here).

* the validation models' layer shapes (:func:`validation_models`, :func:`layer_shapes`),
  from carbonscaling's catalog when it imports, else ``src/carbonscaling/data/models.yaml``
  read with PyYAML (the device machine has no pydantic), else a built-in copy;
* the measurement plans of each section (GEMMs, per-expert loop, attention, bandwidth);
* the CSV schemas, a flushing CSV writer and the self-checked time budget.

``kernel_probe.py`` runs the plans through a kit (``probe_kits.py``: PyTorch on CUDA or CPU,
or NumPy for the torch-free smoke run) and ``ingest.py`` reads what it wrote.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

# The validation models of issue 9 (the Megatron-Bridge rows of data/nemo_performance.csv).
VALIDATION_MODELS = ("gpt-oss-120b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3", "llama3-70b", "llama3-8b")

# Built-in copy of the catalog fields the probe uses (data/models.yaml at stop 18); used only
# where neither the package nor its data file can be read. tests/test_kernel_probe.py checks
# it against the catalog.
_BUILTIN = {
    "gpt-oss-120b": dict(d_model=2880, n_heads=64, n_kv_heads=8, head_dim=64, d_ff=2880, ffn_gated=True,
                         n_experts=128, d_expert=2880, vocab=201088),
    "qwen3-30b-a3b": dict(d_model=2048, n_heads=32, n_kv_heads=4, head_dim=128, d_ff=6144, ffn_gated=True,
                          n_experts=128, d_expert=768, vocab=151936),
    "qwen3-235b-a22b": dict(d_model=4096, n_heads=64, n_kv_heads=4, head_dim=128, d_ff=12288, ffn_gated=True,
                            n_experts=128, d_expert=1536, vocab=151936),
    "deepseek-v3": dict(d_model=7168, n_heads=128, n_kv_heads=128, head_dim=128, d_ff=18432, ffn_gated=True,
                        n_experts=256, d_expert=2048, vocab=129280, q_lora_rank=1536, kv_lora_rank=512,
                        qk_rope_head_dim=64, v_head_dim=128, first_dense_layers=3, n_shared_experts=1),
    "llama3-70b": dict(d_model=8192, n_heads=64, n_kv_heads=8, head_dim=128, d_ff=28672, ffn_gated=True,
                       vocab=128256),
    "llama3-8b": dict(d_model=4096, n_heads=32, n_kv_heads=8, head_dim=128, d_ff=14336, ffn_gated=True,
                      vocab=128256),
}
FIELDS = ("d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "ffn_gated", "n_experts", "d_expert", "vocab",
          "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "v_head_dim", "first_dense_layers", "n_shared_experts")

TOKENS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
# Measured first to last, so that a budget cut leaves a coarse sweep over every model.
TOKEN_TIERS = (8192, 2048, 32768, 512, 4096, 16384, 1024)
SQUARES = (2048, 4096, 6144, 8192, 10240, 12288, 16384)
RECTS = ((16384, 8192, 8192), (8192, 16384, 8192), (8192, 8192, 16384), (8192, 8192, 32768), (4096, 4096, 65536))
EXPERTS = (2, 4, 8, 16, 32)
TOKENS_PER_EXPERT = (128, 256, 512, 1024, 2048, 4096, 8192)
EXPERT_TIERS = (1024, 128, 4096, 256, 2048, 512, 8192)
EXPERT_MODELS = ("gpt-oss-120b", "qwen3-30b-a3b")
SEQS = (4096, 8192)
DUTIES = (0.0, 0.25, 0.5, 0.75, 1.0)
# Megatron-Core clamped GLU (gpt-oss): bytes per FFN unit, data/perf.yaml moe.clamped_glu_* (stop 18).
CLAMPED_GLU_BYTES = {"forward": 16.0, "backward": 30.0}

SMOKE = dict(tokens=(64, 128), tiers=(128, 64), squares=(128, 256), rects=((256, 128, 64),), cap=128, experts=(2, 4),
             tokens_per_expert=(16, 64), expert_tiers=(64, 16), seqs=(64,), duties=(0.0, 1.0))

# --------------------------------------------------------------------------- CSV schemas
_TIMING = ("median_s", "p10_s", "p90_s", "reps")
_TAIL = ("backend", "device", "status", "note")
SCHEMAS = {
    "gemm": ("what", "model", "layer", "pass", "layout", "dtype", "fast_accum", "m", "n", "k", "tokens", "flop",
             *_TIMING, "tflops", *_TAIL),
    "expert_loop": ("model", "variant", "dtype", "experts", "tokens_per_expert", "d_model", "d_expert", "gemms",
                    "flop", *_TIMING, "tflops", *_TAIL),
    "attention": ("model", "kernel", "pass", "dtype", "batch", "heads", "kv_heads", "head_dim", "v_head_dim",
                  "seq", "causal", "flop", *_TIMING, "tflops", *_TAIL),
    "bandwidth": ("op", "dtype", "elements", "bytes", *_TIMING, "gb_s", *_TAIL),
    "power": ("kernel", "duty_target", "duty_measured", "window_s", "samples", "energy_j", "watts_energy",
              "watts_median", "watts_max", "sm_clock_mhz", "mem_clock_mhz", "gpu_util_pct", "temp_c",
              "power_limit_w", "tflops", "sensor", *_TAIL),
    "meta": ("key", "value"),
}


def validation_models(names=VALIDATION_MODELS) -> tuple[dict, str]:
    """``(models, source)``: each model's catalog fields (:data:`FIELDS`) and where they came from."""
    for loader in (_from_package, _from_yaml_file):
        try:
            entries, source = loader()
        except Exception:  # noqa: BLE001 - any failure falls through to the next source
            continue
        return [_pick(n, entries[n]) for n in names], source
    return [_pick(n, _BUILTIN[n]) for n in names], "built-in copy (benchmarks/device/probe_plan.py)"


def _from_package():
    from carbonscaling.model_catalog import catalog_entry
    return {n: catalog_entry(n) for n in VALIDATION_MODELS}, "carbonscaling.model_catalog"


def _from_yaml_file():
    import yaml
    path = Path(__file__).resolve().parents[2] / "src" / "carbonscaling" / "data" / "models.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["models"], str(path.name)


def _pick(name: str, entry: dict) -> dict:
    m = {"name": name, **{k: entry.get(k) for k in FIELDS}}
    m["head_dim"] = m["head_dim"] or m["d_model"] // m["n_heads"]  # Megatron's default kv_channels
    return m


def layer_shapes(m: dict) -> list[tuple[str, int, int]]:
    """``(layer, n_out, k_in)`` of a model's linear layers at TP = 1 (one of each kind)."""
    d, h = m["d_model"], m["n_heads"]
    gate = 2 if m.get("ffn_gated") else 1
    if m.get("q_lora_rank"):  # MLA as Megatron-Core builds it
        qk = m["head_dim"] + m["qk_rope_head_dim"]
        v = m["v_head_dim"]
        out = [("q_down", m["q_lora_rank"], d), ("q_up", h * qk, m["q_lora_rank"]),
               ("kv_down", m["kv_lora_rank"] + m["qk_rope_head_dim"], d),
               ("kv_up", h * (m["head_dim"] + v), m["kv_lora_rank"]), ("proj", d, h * v)]
    else:
        hd = m["head_dim"]
        out = [("qkv", (h + 2 * m["n_kv_heads"]) * hd, d), ("proj", d, h * hd)]
    if not m.get("n_experts") or m.get("first_dense_layers"):
        out += [("fc1", gate * m["d_ff"], d), ("fc2", d, m["d_ff"])]
    if m.get("n_experts"):
        out += [("expert_fc1", gate * m["d_expert"], d), ("expert_fc2", d, m["d_expert"])]
    return out + [("logits", m["vocab"], d)]


def gemm_passes(tokens: int, n_out: int, k_in: int) -> list[tuple[str, str, int, int, int]]:
    """``(pass, layout, m, n, k)`` of a linear layer's three GEMMs as Megatron/TE run them.

    Forward ``y = x W^T`` (TN), data gradient ``dx = dy W`` (NN), weight gradient
    ``dW = dy^T x`` (NT); 2 m n k FLOP each.
    """
    return [("fwd", "TN", tokens, n_out, k_in), ("dgrad", "NN", tokens, k_in, n_out),
            ("wgrad", "NT", n_out, k_in, tokens)]


def gemm_plan(models: list[dict], dtypes, tokens=TOKENS, tiers=TOKEN_TIERS, squares=SQUARES, rects=RECTS,
              cap: int | None = None):
    """Every GEMM item, squares first, then the layer shapes one token tier at a time.

    ``cap`` (smoke runs) clips every dimension and drops the repeats it makes.
    """
    items = []
    for dt in dtypes:
        items += [dict(what="square", model="", layer="", pass_="square", layout="TN", dtype=dt, m=s, n=s, k=s,
                       tokens=0) for s in squares]
        items += [dict(what="rect", model="", layer="", pass_="rect", layout="TN", dtype=dt, m=m, n=n, k=k,
                       tokens=0) for m, n, k in rects]
    for t in [t for t in tiers if t in tokens]:
        for model in models:
            for layer, n_out, k_in in layer_shapes(model):
                if cap:
                    n_out, k_in = min(n_out, cap), min(k_in, cap)
                for p, layout, m, n, k in gemm_passes(t, n_out, k_in):
                    for dt in dtypes:
                        items.append(dict(what="layer", model=model["name"], layer=layer, pass_=p, dtype=dt,
                                          layout="TN" if dt.startswith("fp8") else layout, m=m, n=n, k=k, tokens=t))
    if cap:
        seen, kept = set(), []
        for it in items:
            key = (it["pass_"], it["layout"], it["dtype"], it["m"], it["n"], it["k"])
            if key not in seen:
                seen.add(key)
                kept.append(it)
        items = kept
    return items


def estimate_gemm_seconds(items, bf16_tflops=650.0, fp8_tflops=1200.0, floor_s=0.025, calls=6) -> float:
    """Rough device time of a GEMM plan: each item costs its timing floor plus ``calls`` GEMMs
    (two warm-ups, one sizing call, three samples) at a nominal rate (defaults: about an H200)."""
    return sum(floor_s + calls * 2.0 * i["m"] * i["n"] * i["k"]
               / (1e12 * (fp8_tflops if i["dtype"].startswith("fp8") else bf16_tflops)) for i in items)


def fp8_fast_accum(pass_: str) -> bool:
    """Transformer Engine accumulates the FP8 forward GEMM fast, the gradients in split (precise) mode.

    transformer_engine/pytorch/module/base.py: ``_2X_ACC_FPROP = False``, ``_2X_ACC_DGRAD = True``,
    ``_2X_ACC_WGRAD = True``; torch._scaled_mm's ``use_fast_accum`` is the negation.
    """
    return pass_ in ("fwd", "square", "rect")


def expert_flop(tokens_per_expert: int, d_model: int, d_expert: int, experts: int, gated: bool = True) -> float:
    """FLOP of one MoE layer's expert GEMMs, forward + backward (FC1 and FC2, data and weight grads)."""
    n1 = (2 if gated else 1) * d_expert
    return 3 * 2.0 * experts * tokens_per_expert * (d_model * n1 + d_expert * d_model)


def expert_plan(models: list[dict], experts=EXPERTS, tokens_per_expert=TOKENS_PER_EXPERT, tiers=EXPERT_TIERS):
    by = {m["name"]: m for m in models}
    return [dict(model=name, experts=e, tokens_per_expert=t, d_model=by[name]["d_model"],
                 d_expert=by[name]["d_expert"])
            for t in [t for t in tiers if t in tokens_per_expert] for name in EXPERT_MODELS if name in by
            for e in experts]


def attention_flop(batch: int, heads: int, seq: int, head_dim: int, v_head_dim: int, causal: bool, pass_: str) -> float:
    """FlashAttention's count: forward 2 b h s^2 (d_qk + d_v), halved when causal; backward 2.5 x forward.

    Dao-AILab/flash-attention benchmarks/benchmark_flash_attention.py ``flops``: 4 b s^2 h d
    (/2 causal) forward, 2.5 x that backward.
    """
    fwd = 2.0 * batch * heads * seq * seq * (head_dim + v_head_dim) * (0.5 if causal else 1.0)
    return {"fwd": fwd, "bwd": 2.5 * fwd, "fwd_bwd": 3.5 * fwd}[pass_]


def attention_plan(models: list[dict], seqs=SEQS, kernels=("flash", "cudnn")):
    items = []
    for s in seqs:
        for m in models:
            qk = m["head_dim"] + (m.get("qk_rope_head_dim") or 0)
            v = m.get("v_head_dim") or m["head_dim"]
            for kern in kernels:
                for p in ("fwd", "fwd_bwd"):
                    items.append(dict(model=m["name"], kernel=kern, pass_=p, batch=1, heads=m["n_heads"],
                                      kv_heads=m["n_kv_heads"], head_dim=qk, v_head_dim=v, seq=s, causal=True))
    return items


def bandwidth_plan(smoke: bool = False):
    """Copy and add over sizes past the L2, and gpt-oss's clamped-GLU passes at its expert width."""
    sizes = (1 << 12, 1 << 16) if smoke else (1 << 22, 1 << 24, 1 << 26, 1 << 28)
    rows = (64, 256) if smoke else (4096, 16384, 65536)
    items = [dict(op=op, elements=n, passes={"copy": 2, "add": 3}[op]) for op in ("copy", "add") for n in sizes]
    width = 64 if smoke else 2880  # gpt-oss expert FFN width: FC1 output is 2 x 2880 wide
    for t in rows:
        items += [dict(op=f"clamp_glu_{p}", elements=t * 2 * width, rows=t, width=width) for p in ("fwd", "fwd_bwd")]
    return items


def clamped_glu_bytes(pass_: str, units: int) -> float:
    """Bytes the model charges for the clamped GLU (per FFN unit, :data:`CLAMPED_GLU_BYTES`)."""
    b = CLAMPED_GLU_BYTES
    return units * (b["forward"] if pass_ == "fwd" else b["forward"] + b["backward"])


# --------------------------------------------------------------------------- statistics
def summarize(times: list[float]) -> dict:
    """Median, 10th and 90th percentile (nearest rank) of per-repetition seconds."""
    ts = sorted(times)
    if not ts:
        raise ValueError("no timings")

    def q(p):
        return ts[min(len(ts) - 1, max(0, math.ceil(p * len(ts)) - 1))]
    n = len(ts)
    med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
    return {"median_s": med, "p10_s": q(0.1), "p90_s": q(0.9)}


# --------------------------------------------------------------------------- budget and output
class Budget:
    """Wall-clock budget the probe checks before each measurement; each section gets a share."""

    def __init__(self, total_s: float, clock=time.monotonic):
        self.clock = clock
        self.start = clock()
        self.total_s = float(total_s)
        self.skipped: dict[str, int] = {}

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def section(self, name: str, share_s: float) -> "Deadline":
        return Deadline(self, name, min(self.clock() + share_s, self.start + self.total_s))


class Deadline:
    def __init__(self, budget: Budget, name: str, until: float):
        self.budget, self.name, self.until = budget, name, until

    def left(self) -> float:
        return self.until - self.budget.clock()

    def allows(self, need_s: float = 0.0) -> bool:
        """True while at least ``need_s`` seconds are left; else counts the item as skipped."""
        if self.left() > need_s:
            return True
        self.budget.skipped[self.name] = self.budget.skipped.get(self.name, 0) + 1
        return False


class CsvSink:
    """One CSV per section under ``out``; rows are flushed as they come (a timeout keeps them)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, tuple] = {}

    def write(self, table: str, **row) -> None:
        cols = SCHEMAS[table]
        unknown = set(row) - set(cols)
        if unknown:
            raise KeyError(f"{table}: unknown columns {sorted(unknown)}")
        if table not in self._files:
            fh = (self.out / f"{table}.csv").open("w", newline="", encoding="utf-8")
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            self._files[table] = (fh, w)
        fh, w = self._files[table]
        w.writerow({c: _fmt(row.get(c, "")) for c in cols})
        fh.flush()

    def close(self) -> None:
        for fh, _ in self._files.values():
            fh.close()
        self._files.clear()


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_csv(path: Path) -> list[dict]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
