"""Kernel probe for a lent GPU: GEMM rates by shape (BF16, FP8), the per-expert loop cost,
fused attention, HBM bandwidth and board power against utilisation, in one self-timed run.

    python3 benchmarks/device/kernel_probe.py --out DIR [--budget-s 420] [--sections ...]
    python3 benchmarks/device/kernel_probe.py --out DIR --smoke      # CPU, tiny shapes, seconds
    python3 benchmarks/device/kernel_probe.py --out DIR --plan       # item counts only

Writes gemm.csv, expert_loop.csv, attention.csv, bandwidth.csv, power.csv and meta.csv under
DIR (schemas: probe_plan.SCHEMAS), one row per item as it is measured, so a run cut short keeps
what it did. Every section checks its share of ``--budget-s`` before each item and skips the
rest when it runs out (meta.csv counts them). PyTorch is imported inside ``main`` only; the
smoke run uses NumPy where torch is not installed. benchmarks/device/README.md says how to run
it on the device tool's H200 and what each CSV feeds; ingest.py prints the candidate values.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import probe_plan as P  # noqa: E402
import probe_sections as S  # noqa: E402

ORDER = ("gemm", "expert", "attention", "bandwidth", "power")


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the CSVs (created)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget the probe keeps to")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, no CUDA: checks the plumbing in seconds")
    ap.add_argument("--sections", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--backend", choices=("auto", "torch", "numpy"), default="auto")
    ap.add_argument("--device", default="auto", help="torch device: auto, cuda or cpu")
    ap.add_argument("--plan", action="store_true", help="print the planned item counts and exit")
    a = ap.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = [s for s in a.sections if s not in ORDER]
    if bad:
        ap.error(f"--sections: unknown {bad} (allowed: {', '.join(ORDER)})")
    if a.budget_s <= 0:
        ap.error("--budget-s must be > 0")
    if a.smoke:
        a.device = "cpu"
    return a


def plan_counts(models, smoke=False) -> dict:
    sm = P.SMOKE if smoke else None
    g = P.gemm_plan(models, ["bf16", "fp8_e4m3"],
                    **({k: sm[k] for k in ("tokens", "tiers", "squares", "rects", "cap")} if sm else {}))
    e = P.expert_plan(models, **({"experts": sm["experts"], "tokens_per_expert": sm["tokens_per_expert"],
                                  "tiers": sm["expert_tiers"]} if sm else {}))
    return {"gemm": len(g), "gemm_tflop": sum(2.0 * i["m"] * i["n"] * i["k"] for i in g) / 1e12,
            "gemm_est_s_h200": P.estimate_gemm_seconds(g),
            "expert_configs": len(e),
            "attention": len(P.attention_plan(models, **({"seqs": sm["seqs"]} if sm else {}))),
            "bandwidth": len(P.bandwidth_plan(smoke))}


def main(argv=None) -> int:
    a = parse(argv)
    models, source = P.validation_models()
    if a.plan:
        print(f"models from {source}: {', '.join(m['name'] for m in models)}")
        for k, v in plan_counts(models, a.smoke).items():
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
        return 0
    budget = P.Budget(a.budget_s)
    sink = P.CsvSink(a.out)
    meta = {"date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "argv": " ".join(
        sys.argv[1:] if argv is None else argv), "python": platform.python_version(), "models_from": source,
        "budget_s": a.budget_s, "smoke": a.smoke}
    from probe_kits import make_kit
    from probe_power import make_sampler
    sampler = make_sampler(want=not a.smoke and "power" in a.sections)
    if sampler.name != "none":
        S.idle_power(sink, sampler, 3.0, "board")
    kit = make_kit(a.backend, a.device)  # imports torch (and starts CUDA) here, not at module import
    if a.smoke:
        kit.time_kw = dict(target_s=0.002, max_samples=5, min_sample_s=1e-4)
    meta.update(kit.info() if hasattr(kit, "info") else {"backend": kit.name, "device": kit.device_name})
    meta["power_sensor"] = sampler.name
    for name in ORDER:
        if name not in a.sections:
            continue
        t0 = time.monotonic()
        dl = budget.section(name, S.SHARES[name] * a.budget_s)
        try:
            if name == "power":
                S.run_power(kit, sink, dl, sampler, smoke=a.smoke)
            else:
                S.SECTIONS[name](kit, sink, dl, models, smoke=a.smoke)
        except Exception as e:  # noqa: BLE001 - one section's failure must not cost the others
            meta[f"error_{name}"] = f"{type(e).__name__}: {str(e)[:300]}"
            kit.free()
        meta[f"seconds_{name}"] = round(time.monotonic() - t0, 2)
        meta[f"skipped_{name}"] = budget.skipped.get(name, 0)
        print(f"[{budget.elapsed():7.1f} s] {name}: {meta[f'seconds_{name}']} s, "
              f"{meta[f'skipped_{name}']} items skipped for time", flush=True)
    meta["elapsed_s"] = round(budget.elapsed(), 2)
    for k, v in meta.items():
        sink.write("meta", key=k, value=v)
    sink.close()
    print(f"wrote {', '.join(sorted(p.name for p in Path(a.out).glob('*.csv')))} to {a.out} "
          f"in {meta['elapsed_s']} s", flush=True)
    print(status_counts(a.out))
    return 0


def status_counts(out: Path) -> str:
    """One line per CSV: rows by status, and the first error (the output tail shows it)."""
    lines = []
    for name in [n for n in P.SCHEMAS if n != "meta"]:
        p = Path(out) / f"{name}.csv"
        if not p.exists():
            continue
        rows = P.read_csv(p)
        counts = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        err = next((r["note"] for r in rows if r["status"] == "error"), "")
        lines.append(f"  {name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                     + (f"; first error: {err[:150]}" if err else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
