"""Read the kernel probe's CSVs and print the candidate data-file values (edits no file).

    python benchmarks/device/ingest.py DIR [--device-key H200]

For each section: the value a data file would take, the value it has now, and the citation
to record with it (benchmarks/device/README.md says which file and field each feeds):

* gemm.csv: BF16 / FP8 maximum achievable matmul rate (MAMF) as a fraction of the catalog
  peak (hardware_modern.yaml ``gemm_efficiency_max``, ``gemm_efficiency_max_fp8``), and the
  layer-shape rates over the model's own prediction (perf/kernels.py ``gemm_time`` with
  ``in_situ_factor`` 1: a microbenchmark is not inside a training step);
* expert_loop.csv: GPU seconds per local expert of a looped grouped GEMM (6 GEMMs: one MoE
  layer's forward and backward) with its spread (perf.yaml ``moe.expert_overhead_s``);
* attention.csv: fused-attention fraction of peak by kernel and head_dim
  (perf.yaml ``attention.flash_fraction_of_peak``);
* bandwidth.csv: copy / add fraction of the catalog HBM rate (perf.yaml ``hbm.efficiency``)
  and the clamped-GLU passes against their counted bytes;
* power.csv: board watts at each duty cycle as fractions of TDP (power.yaml ``measured.*``).

Runs where carbonscaling imports (here) and, reading the YAML files, where only PyYAML does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_plan import read_csv  # noqa: E402

_DATA = Path(__file__).resolve().parents[2] / "src" / "carbonscaling" / "data"
_NUM = {"m", "n", "k", "tokens", "flop", "median_s", "p10_s", "p90_s", "reps", "tflops", "experts",
        "tokens_per_expert", "d_model", "d_expert", "gemms", "batch", "heads", "kv_heads", "head_dim", "v_head_dim",
        "seq", "elements", "bytes", "gb_s", "duty_target", "duty_measured", "window_s", "samples", "energy_j",
        "watts_energy", "watts_median", "watts_max", "sm_clock_mhz", "mem_clock_mhz", "gpu_util_pct", "temp_c",
        "power_limit_w"}


def load(folder: Path) -> dict[str, list[dict]]:
    """Each CSV's rows that measured something (status ok), numbers as floats; plus ``meta``."""
    out = {}
    for name in ("gemm", "expert_loop", "attention", "bandwidth", "power"):
        p = Path(folder) / f"{name}.csv"
        rows = read_csv(p) if p.exists() else []
        out[name] = [{k: (float(v) if k in _NUM and v not in ("", None) else v) for k, v in r.items()}
                     for r in rows if r.get("status") == "ok"]
    p = Path(folder) / "meta.csv"
    out["meta"] = {r["key"]: r["value"] for r in read_csv(p)} if p.exists() else {}
    return out


def catalog(device_key: str) -> dict:
    """The catalog and constants the candidates are compared with (current values)."""
    import yaml

    def y(name):
        return yaml.safe_load((_DATA / name).read_text(encoding="utf-8"))
    dev = y("hardware_modern.yaml")["devices"][device_key]
    perf, power = y("perf.yaml"), y("power.yaml")
    return {"device": device_key, "peak_bf16_tflops": dev["peak_tflops"], "peak_fp8_tflops": dev.get("peak_tflops_fp8"),
            "hbm_gb_s": dev["hbm_gb_s"], "tdp_w": dev["tdp_w"], "gemm_efficiency_max": dev.get("gemm_efficiency_max"),
            "gemm_efficiency_max_fp8": dev.get("gemm_efficiency_max_fp8"),
            "expert_overhead_s": perf["moe"]["expert_overhead_s"]["value"],
            "hbm_efficiency": perf["hbm"]["efficiency"]["value"],
            "flash_fraction_of_peak": perf["attention"]["flash_fraction_of_peak"]["value"],
            "dynamic_fraction_of_tdp": power["dynamic_fraction_of_tdp"],
            "gpu_busy_fraction_of_tdp": power["measured"]["gpu_busy_fraction_of_tdp"]["value"],
            "gpu_idle_fraction_of_tdp": power["measured"]["gpu_idle_fraction_of_tdp"]["value"]}


def _spread(v: list[float]) -> dict:
    v = sorted(v)
    if not v:
        return {"n": 0}
    q = statistics.quantiles(v, n=10, method="inclusive") if len(v) > 1 else [v[0]] * 9
    return {"n": len(v), "median": statistics.median(v), "p10": q[0], "p90": q[-1]}


def gemm_summary(rows: list[dict], cat: dict) -> dict:
    """MAMF (best square/rect rate) per format over the catalog peak; layer shapes over the MAMF.

    A CPU smoke run's fp32 rows stand in for bf16 (so the plumbing is exercised), against the BF16 peak.
    """
    out = {}
    for dt in sorted({r["dtype"] for r in rows}):
        key = "fp8" if dt.startswith("fp8") else "bf16"
        peak = cat["peak_fp8_tflops"] if key == "fp8" else cat["peak_bf16_tflops"]
        mamf = [r for r in rows if r["dtype"] == dt and r["what"] in ("square", "rect")]
        if mamf and peak:
            best = max(mamf, key=lambda r: r["tflops"])
            out[f"mamf_{key}_tflops"] = best["tflops"]
            out[f"mamf_{key}_fraction"] = best["tflops"] / peak
            out[f"mamf_{key}_shape"] = f"{int(best['m'])}x{int(best['n'])}x{int(best['k'])}"
        layer = [r for r in rows if r["dtype"] == dt and r["what"] == "layer"]
        if layer and mamf:
            out[f"layer_{key}_of_mamf"] = _spread([r["tflops"] / out[f"mamf_{key}_tflops"] for r in layer])
    return out


def gemm_vs_model(rows: list[dict], device_key: str) -> dict:
    """Measured / predicted microbenchmark time per layer GEMM, by token count (needs carbonscaling)."""
    try:
        from carbonscaling.hardware import load_system
        from carbonscaling.perf.constants import default_constants
        from carbonscaling.perf.kernels import gemm_time
    except ImportError:
        return {}
    dev, c = load_system(device_key).device, default_constants().replace(gemm_in_situ_factor=1.0)
    by: dict = {}
    for r in rows:
        if r["what"] != "layer" or r["dtype"] not in ("bf16", "fp8_e4m3"):
            continue
        prec, in_b = ("bf16", 2.0) if r["dtype"] == "bf16" else ("fp8", 1.0)
        pred = float(gemm_time(r["m"], r["n"], r["k"], 1, dev, c, prec, in_b))
        by.setdefault((r["dtype"], int(r["tokens"])), []).append(r["median_s"] / pred)
    return {k: _spread(v) for k, v in sorted(by.items())}


def expert_summary(rows: list[dict]) -> dict:
    """Seconds per local expert: (looped variant - one-kernel reference) / experts, over every config."""
    t = {(r["model"], int(r["experts"]), int(r["tokens_per_expert"]), r["variant"]): r["median_s"] for r in rows}
    configs = sorted({k[:3] for k in t})
    out = {}
    for loop in ("loop_graph", "loop_streams", "loop"):
        for ref in ("bmm", "grouped", "dense"):
            v = [(t[c + (loop,)] - t[c + (ref,)]) / c[1] for c in configs if c + (loop,) in t and c + (ref,) in t]
            if v:
                out[f"{loop}-{ref}"] = _spread(v)
    by_tok: dict = {}
    for c in configs:
        if c + ("loop_graph",) in t and c + ("bmm",) in t:
            by_tok.setdefault(c[2], []).append((t[c + ("loop_graph",)] - t[c + ("bmm",)]) / c[1])
    out["loop_graph-bmm_by_tokens_per_expert"] = {k: _spread(v) for k, v in sorted(by_tok.items())}
    # Host launch cost where the loop is host-bound (few tokens per expert): eager minus graph
    # replay, per GEMM launch (data/host.yaml per_launch_s).
    host = [(t[c + ("loop",)] - t[c + ("loop_graph",)]) / (6 * c[1]) for c in configs
            if c[2] <= 256 and c + ("loop",) in t and c + ("loop_graph",) in t]
    if host:
        out["host_per_launch_s"] = _spread(host)
    return out


def attention_summary(rows: list[dict], cat: dict) -> dict:
    by: dict = {}
    for r in rows:
        by.setdefault((r["kernel"], r["pass"], int(r["head_dim"])), []).append(r["tflops"] / cat["peak_bf16_tflops"])
    return {k: _spread(v) for k, v in sorted(by.items())}


def bandwidth_summary(rows: list[dict], cat: dict) -> dict:
    out = {}
    for op in ("copy", "add"):
        rs = [r for r in rows if r["op"] == op]
        if rs:
            big = max(rs, key=lambda r: r["elements"])
            out[f"{op}_gb_s"] = big["gb_s"]
            out[f"{op}_fraction_of_hbm"] = big["gb_s"] / cat["hbm_gb_s"]
    for op in ("clamp_glu_fwd", "clamp_glu_fwd_bwd"):
        rs = [r for r in rows if r["op"] == op]
        if rs and "copy_gb_s" in out:
            out[f"{op}_counted_bytes_rate_over_copy"] = _spread([r["gb_s"] / out["copy_gb_s"] for r in rs])
    return out


def power_summary(rows: list[dict], cat: dict) -> dict:
    def watts(r):
        return r["watts_energy"] if isinstance(r.get("watts_energy"), float) else r.get("watts_median")
    out = {}
    for r in rows:
        w = watts(r)
        if isinstance(w, float):
            out[f"{r['kernel']}@{r['duty_target']:g}"] = {"watts": w, "fraction_of_tdp": w / cat["tdp_w"],
                                                           "duty_measured": r.get("duty_measured"),
                                                           "sm_clock_mhz": r.get("sm_clock_mhz")}
    pts = [(r["duty_measured"], watts(r)) for r in rows if r["kernel"] == "gemm_bf16" and isinstance(watts(r), float)]
    if len(pts) >= 2:
        xs, ys = zip(*pts)
        slope, icpt = statistics.linear_regression(xs, ys)
        out["fit"] = {"watts_at_0": icpt, "watts_per_duty": slope,
                      "dynamic_share": slope / (icpt + slope) if icpt + slope else None}
    return out


def _f(v, spec=".3g"):
    return format(v, spec) if isinstance(v, float) else str(v)


def report(folder: Path, device_key: str | None = None) -> dict:
    d = load(folder)
    meta = d["meta"]
    key = device_key or ("H200" if "H200" in meta.get("device", "") else "H100-SXM")
    cat = catalog(key)
    res = {"catalog": cat, "smoke": meta.get("smoke") == "True", "gemm": gemm_summary(d["gemm"], cat),
           "gemm_vs_model": gemm_vs_model(d["gemm"], key),
           "expert": expert_summary(d["expert_loop"]), "attention": attention_summary(d["attention"], cat),
           "bandwidth": bandwidth_summary(d["bandwidth"], cat), "power": power_summary(d["power"], cat),
           "citation": f"measured: benchmarks/device/kernel_probe.py on the device tool's {key}, "
                       f"{meta.get('date_utc', '?')[:10]} ({meta.get('device', '?')}, {meta.get('backend', '?')} "
                       f"{meta.get('torch', '')})"}
    return res


def print_report(res: dict) -> None:
    cat, g = res["catalog"], res["gemm"]
    if res["smoke"]:
        print("SMOKE RUN (CPU, tiny shapes): the numbers below check the plumbing; they are not candidates")
    print(f"source to record: \"{res['citation']}\"; verification flag: measured")
    print(f"\n[gemm] hardware_modern.yaml {cat['device']}")
    for k in ("bf16", "fp8"):
        if f"mamf_{k}_fraction" in g:
            field = "gemm_efficiency_max" + ("_fp8" if k == "fp8" else "")
            print(f"  {field}: {g[f'mamf_{k}_fraction']:.3f} (MAMF {g[f'mamf_{k}_tflops']:.1f} TFLOP/s at "
                  f"{g[f'mamf_{k}_shape']}; now {cat[field]})")
        if f"layer_{k}_of_mamf" in g:
            s = g[f"layer_{k}_of_mamf"]
            print(f"  {k} layer shapes / MAMF: median {_f(s['median'])} (p10 {_f(s['p10'])}, p90 {_f(s['p90'])}, "
                  f"n {s['n']})")
    for (dt, tok), s in res["gemm_vs_model"].items():
        print(f"  {dt} tokens {tok:>6}: measured / model time median {_f(s['median'])} "
              f"(p10 {_f(s['p10'])}, p90 {_f(s['p90'])}, n {s['n']})")
    print(f"\n[expert] perf.yaml moe.expert_overhead_s (now {cat['expert_overhead_s']:.3g} s, fitted)")
    for k, s in res["expert"].items():
        if k.endswith("by_tokens_per_expert"):
            for tok, ss in s.items():
                print(f"    loop_graph-bmm at {tok:>5} tokens/expert: {_f(ss['median'])} s (n {ss['n']})")
        else:
            unit = "s per GEMM launch (host.yaml per_launch_s)" if k == "host_per_launch_s" else "s per expert"
            print(f"  {k}: {_f(s['median'])} {unit} (p10 {_f(s['p10'])}, p90 {_f(s['p90'])}, n {s['n']})")
    print(f"\n[attention] perf.yaml attention.flash_fraction_of_peak (now {cat['flash_fraction_of_peak']})")
    for (kern, p, hd), s in res["attention"].items():
        print(f"  {kern:9s} {p:8s} head_dim {hd:>3}: {_f(s['median'])} of peak (n {s['n']})")
    b = res["bandwidth"]
    print(f"\n[bandwidth] perf.yaml hbm.efficiency (now {cat['hbm_efficiency']})")
    for k, v in b.items():
        print(f"  {k}: {_f(v['median']) if isinstance(v, dict) else _f(v)}")
    print(f"\n[power] power.yaml measured.* (TDP {cat['tdp_w']} W; busy {cat['gpu_busy_fraction_of_tdp']}, "
          f"idle {cat['gpu_idle_fraction_of_tdp']}, dynamic {cat['dynamic_fraction_of_tdp']})")
    for k, v in res["power"].items():
        print(f"  {k}: " + ", ".join(f"{kk} {_f(vv)}" for kk, vv in v.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--device-key", default=None, help="catalog key (default: from meta.csv's device name)")
    a = ap.parse_args(argv)
    if not (a.folder / "meta.csv").exists():
        ap.error(f"{a.folder}: no meta.csv (not a kernel_probe.py output folder)")
    print_report(report(a.folder, a.device_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
