"""The probe's five sections: each walks its plan (probe_plan.py) through a kit (probe_kits.py),
checks its deadline before every item and writes one CSV row per item (skips and errors too).
"""

from __future__ import annotations

import probe_plan as P
from probe_kits import Unsupported
from probe_power import duty_window


def _measure(kit, make, **time_kw):
    """``(timing dict, status, note)``; a refusal or failure becomes a row, never a crash."""
    try:
        fns = make()
        fns = fns if isinstance(fns, list) else [fns]
        r = kit.time(fns, **time_kw)
        note = "; ".join(n for n in (getattr(fns[0], "note", ""), r.pop("note", "")) if n)
        return r, "ok", note
    except Unsupported as e:
        return {}, "skipped", str(e)
    except Exception as e:  # noqa: BLE001 - out of memory, a kernel refusing a shape, ...
        kit.free()
        return {}, "error", f"{type(e).__name__}: {str(e)[:200]}"


def _rate(flop_or_bytes: float, r: dict, scale: float):
    return flop_or_bytes / r["median_s"] / scale if r.get("median_s") else ""


def _tail(kit, status, note):
    return {"backend": kit.name, "device": kit.device_name, "status": status, "note": note}


def run_gemm(kit, sink, dl, models, smoke=False):
    for dt, why in kit.unsupported_dtypes.items():
        sink.write("gemm", what="format", dtype=dt, **_tail(kit, "skipped", why))
    kw = {k: P.SMOKE[k] for k in ("tokens", "tiers", "squares", "rects", "cap")} if smoke else {}
    for it in P.gemm_plan(models, kit.gemm_dtypes, **kw):
        if not dl.allows():
            continue
        fa = P.fp8_fast_accum(it["pass_"]) if it["dtype"].startswith("fp8") else ""
        flop = 2.0 * it["m"] * it["n"] * it["k"]
        r, status, note = _measure(kit, lambda it=it, fa=fa: kit.gemm(it["m"], it["n"], it["k"], it["dtype"],
                                                                     it["layout"], fa))
        sink.write("gemm", what=it["what"], model=it["model"], layer=it["layer"], **{"pass": it["pass_"]},
                   layout=it["layout"], dtype=it["dtype"], fast_accum=fa, m=it["m"], n=it["n"], k=it["k"],
                   tokens=it["tokens"], flop=flop, **r, tflops=_rate(flop, r, 1e12), **_tail(kit, status, note))
        if flop > 1e12:
            kit.free()


VARIANTS = ("loop", "loop_streams", "loop_graph", "grouped", "bmm", "dense")


def run_experts(kit, sink, dl, models, smoke=False):
    """Per-expert loop (eager, over streams, graph-replayed) against one kernel per product."""
    kw = dict(experts=P.SMOKE["experts"], tokens_per_expert=P.SMOKE["tokens_per_expert"],
              tiers=P.SMOKE["expert_tiers"]) if smoke else {}
    for it in P.expert_plan(models, **kw):
        if not dl.allows():
            continue
        E, t, d, f = it["experts"], it["tokens_per_expert"], it["d_model"], it["d_expert"]
        if smoke:
            d, f = min(d, 64), min(f, 32)
        flop = P.expert_flop(t, d, f, E)
        try:
            variants = kit.expert_variants(E, t, d, f)
        except Exception as e:  # noqa: BLE001
            kit.free()
            sink.write("expert_loop", model=it["model"], dtype=kit.dtype_name, variant="all", experts=E,
                       tokens_per_expert=t,
                       **_tail(kit, "error", f"{type(e).__name__}: {str(e)[:200]}"))
            continue
        check = ""
        if hasattr(kit, "check_experts"):
            err = kit.check_experts(variants)
            check = f"loop vs bmm relative difference {err:.1e}" + ("" if err < 2e-2 else " (MISMATCH)")
        for name in VARIANTS:
            if name not in variants:
                why = kit.missing.get(name, f"{kit.name} has no {name} variant")
                sink.write("expert_loop", model=it["model"], dtype=kit.dtype_name, variant=name, experts=E,
                           tokens_per_expert=t, d_model=d, d_expert=f, **_tail(kit, "skipped", why))
                continue
            r, status, note = _measure(kit, lambda fn=variants[name]: fn, graph=False)
            sink.write("expert_loop", model=it["model"], dtype=kit.dtype_name, variant=name, experts=E,
                       tokens_per_expert=t, d_model=d, d_expert=f, gemms=6 * E if name.startswith("loop") else 6,
                       flop=flop, **r,
                       tflops=_rate(flop, r, 1e12), **_tail(kit, status, note or check))
        del variants
        kit.free()


def run_attention(kit, sink, dl, models, smoke=False):
    kw = dict(seqs=P.SMOKE["seqs"]) if smoke else {}
    for it in P.attention_plan(models, kernels=kit.attention_kernels, **kw):
        if smoke:
            it.update(heads=2, kv_heads=1 if it["kv_heads"] < it["heads"] else 2)
        if not dl.allows():
            continue
        flop = P.attention_flop(it["batch"], it["heads"], it["seq"], it["head_dim"], it["v_head_dim"],
                                it["causal"], it["pass_"])
        r, status, note = _measure(kit, lambda it=it: kit.attention(it))
        sink.write("attention", model=it["model"], kernel=it["kernel"], dtype=kit.dtype_name, **{"pass": it["pass_"]},
                   batch=it["batch"],
                   heads=it["heads"], kv_heads=it["kv_heads"], head_dim=it["head_dim"], v_head_dim=it["v_head_dim"],
                   seq=it["seq"], causal=it["causal"], flop=flop, **r, tflops=_rate(flop, r, 1e12),
                   **_tail(kit, status, note))
        kit.free()


def run_bandwidth(kit, sink, dl, models=None, smoke=False):
    elt, dtype = kit.elt_bytes, kit.dtype_name
    for it in P.bandwidth_plan(smoke):
        if not dl.allows():
            continue
        if it["op"].startswith("clamp_glu"):
            pass_ = "fwd" if it["op"] == "clamp_glu_fwd" else "fwd_bwd"
            nbytes = P.clamped_glu_bytes(pass_, it["rows"] * it["width"]) * elt / 2  # the counts are BF16
            note = "bytes: the model's count (data/perf.yaml moe.clamped_glu_*), not a measurement"
        else:
            nbytes, note = float(it["passes"] * it["elements"] * elt), ""
        r, status, why = _measure(kit, lambda it=it: kit.elementwise(it))
        sink.write("bandwidth", op=it["op"], dtype=dtype, elements=it["elements"], bytes=nbytes, **r,
                   gb_s=_rate(nbytes, r, 1e9), **_tail(kit, status, why or note))
        kit.free()


def run_power(kit, sink, dl, sampler, smoke=False):
    """Watts at each duty cycle of a large BF16 GEMM, then an HBM copy at full duty."""
    duties = P.SMOKE["duties"] if smoke else P.DUTIES
    levels = [("gemm_bf16", d) for d in duties] + [("copy", 1.0)]
    preroll = 0.0 if smoke else 1.0
    window = 0.2 if smoke else max(0.5, min(5.0, (dl.left() - 2.0) / len(levels) - preroll))
    loads = {}
    for kind, duty in levels:
        if not dl.allows(window + preroll):
            continue
        try:
            if kind not in loads:
                loads[kind] = kit.load(kind)
            fn, flop = loads[kind]
            s = duty_window(kit, sampler, fn, duty, window, preroll_s=preroll)
        except Exception as e:  # noqa: BLE001
            sink.write("power", kernel=kind, duty_target=duty, sensor=sampler.name,
                       **_tail(kit, "error", f"{type(e).__name__}: {str(e)[:200]}"))
            continue
        tflops = flop * s["calls"] / s["window_s"] / 1e12 if flop else ""
        s.pop("calls")
        sink.write("power", kernel=kind, duty_target=duty, **s, tflops=tflops, sensor=sampler.name,
                   **_tail(kit, "ok", "" if sampler.name != "none" else "no power sensor: windows timed only"))
    loads.clear()
    kit.free()


def idle_power(sink, sampler, seconds: float, device: str):
    """Board power before this process touches CUDA (no context on the card)."""
    import time
    sampler.start()
    time.sleep(seconds)
    s = sampler.stop()
    sink.write("power", kernel="idle_no_context", duty_target=0.0, duty_measured=0.0, **s, sensor=sampler.name,
               backend="none", device=device, status="ok", note="before CUDA initialisation")


SECTIONS = {"gemm": run_gemm, "expert": run_experts, "attention": run_attention, "bandwidth": run_bandwidth}
# Shares of the total budget; the rest covers start-up (torch import, CUDA context) and slack.
SHARES = {"gemm": 0.40, "expert": 0.15, "attention": 0.12, "bandwidth": 0.05, "power": 0.16}
