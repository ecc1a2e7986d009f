"""The device kernel probe (benchmarks/device/): plans against hand counts, the budget it checks,
its CSV schemas on a real smoke run (NumPy here and in CI; PyTorch on the CPU where installed),
and ingest.py's candidate values on the smoke output and on hand-made rows."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import pytest

DEVICE = Path(__file__).resolve().parents[1] / "benchmarks" / "device"
sys.path.insert(0, str(DEVICE))
P = importlib.import_module("probe_plan")
probe = importlib.import_module("kernel_probe")
ingest = importlib.import_module("ingest")


def test_builtin_models_match_the_catalog():
    from carbonscaling.model_catalog import catalog_entry
    for name, fields in P._BUILTIN.items():
        entry = catalog_entry(name)
        for k, v in fields.items():
            want = entry.get(k) or (entry["d_model"] // entry["n_heads"] if k == "head_dim" else None)
            assert v == want, (name, k)
    assert set(P._BUILTIN) == set(P.VALIDATION_MODELS)


def test_catalog_sources_agree():
    pkg, src = P.validation_models()
    assert src == "carbonscaling.model_catalog"
    assert P._from_yaml_file()[1] == "models.yaml"
    builtin = [P._pick(n, P._BUILTIN[n]) for n in P.VALIDATION_MODELS]
    assert pkg == builtin


def _shapes(name):
    m = next(m for m in P.validation_models()[0] if m["name"] == name)
    return {layer: (n, k) for layer, n, k in P.layer_shapes(m)}


def test_layer_shapes_by_hand():
    g = _shapes("gpt-oss-120b")
    assert g["qkv"] == ((64 + 2 * 8) * 64, 2880) and g["proj"] == (2880, 64 * 64)
    assert g["expert_fc1"] == (2 * 2880, 2880) and g["expert_fc2"] == (2880, 2880)
    assert g["logits"] == (201088, 2880) and "fc1" not in g
    d = _shapes("deepseek-v3")  # MLA; three dense layers first
    assert d["q_up"] == (128 * (128 + 64), 1536) and d["kv_down"] == (512 + 64, 7168)
    assert d["kv_up"] == (128 * 256, 512) and d["proj"] == (7168, 128 * 128)
    assert d["fc1"] == (2 * 18432, 7168) and d["expert_fc1"] == (2 * 2048, 7168)
    assert _shapes("llama3-70b")["fc1"] == (2 * 28672, 8192)


def test_gemm_passes_carry_the_same_work():
    for p, layout, m, n, k in P.gemm_passes(4096, 5760, 2880):
        assert m * n * k == 4096 * 5760 * 2880
    assert [x[:2] for x in P.gemm_passes(1, 2, 3)] == [("fwd", "TN"), ("dgrad", "NN"), ("wgrad", "NT")]


def test_gemm_plan_orders_squares_then_tiers_and_fp8_runs_tn():
    models = P.validation_models()[0]
    items = P.gemm_plan(models, ["bf16", "fp8_e4m3"])
    n_sq = 2 * (len(P.SQUARES) + len(P.RECTS))
    assert all(i["what"] in ("square", "rect") for i in items[:n_sq])
    assert items[n_sq]["tokens"] == P.TOKEN_TIERS[0]
    assert all(i["layout"] == "TN" for i in items if i["dtype"] == "fp8_e4m3")
    assert {i["tokens"] for i in items[n_sq:]} == set(P.TOKENS)
    # the whole plan fits its share of the default budget at about an H200's rates
    assert P.estimate_gemm_seconds(items) < 0.40 * 420


def test_fp8_accumulation_follows_transformer_engine():
    assert P.fp8_fast_accum("fwd") and not P.fp8_fast_accum("dgrad") and not P.fp8_fast_accum("wgrad")


def test_flop_counts_by_hand():
    # FlashAttention: 4 b s^2 h d, halved causal; backward 2.5x
    assert P.attention_flop(1, 64, 4096, 128, 128, True, "fwd") == 4 * 4096 ** 2 * 64 * 128 / 2
    assert P.attention_flop(2, 8, 512, 64, 64, False, "fwd_bwd") == 3.5 * 4 * 2 * 512 ** 2 * 8 * 64
    # one MoE layer's expert GEMMs: 3 x 2 t (d x 2f + f x d) per expert
    assert P.expert_flop(128, 2880, 2880, 4) == 3 * 2 * 4 * 128 * (2880 * 5760 + 2880 * 2880)
    assert P.clamped_glu_bytes("fwd", 10) == 160 and P.clamped_glu_bytes("fwd_bwd", 10) == 460


def test_summarize_and_budget():
    s = P.summarize([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert s == {"median_s": 5.5, "p10_s": 1.0, "p90_s": 9.0}
    with pytest.raises(ValueError):
        P.summarize([])
    now = [0.0]
    b = P.Budget(10.0, clock=lambda: now[0])
    dl = b.section("gemm", 4.0)
    assert dl.allows(3.0)
    now[0] = 3.5
    assert not dl.allows(1.0)  # 0.5 s left: counted as skipped
    assert dl.allows()
    now[0] = 4.5
    assert not dl.allows()
    assert b.skipped["gemm"] == 2
    now[0] = 9.0
    assert b.section("power", 5.0).left() == pytest.approx(1.0)  # capped by the total


def test_csv_sink_checks_columns(tmp_path):
    sink = P.CsvSink(tmp_path)
    sink.write("meta", key="a", value=1.5)
    with pytest.raises(KeyError):
        sink.write("meta", key="b", nonsense=1)
    sink.close()
    assert (tmp_path / "meta.csv").read_text().splitlines() == ["key,value", "a,1.5"]


def _check_run(out: Path, backend: str) -> dict[str, list[dict]]:
    tables = {}
    for name, cols in P.SCHEMAS.items():
        with (out / f"{name}.csv").open(newline="") as fh:
            r = csv.DictReader(fh)
            assert tuple(r.fieldnames) == cols, name
            tables[name] = list(r)
        if name == "meta":
            continue
        assert tables[name], name
        for row in tables[name]:
            assert row["status"] in ("ok", "skipped"), (name, row)
            assert row["backend"] in (backend, "none")
            if row["status"] == "ok" and name != "power":
                med, reps = float(row["median_s"]), float(row["reps"])
                assert med > 0 and reps >= 3 and float(row["p10_s"]) <= med <= float(row["p90_s"])
                rate, work = ("gb_s", "bytes") if name == "bandwidth" else ("tflops", "flop")
                scale = 1e9 if name == "bandwidth" else 1e12
                assert float(row[rate]) == pytest.approx(float(row[work]) / med / scale, rel=1e-4)
    meta = {r["key"]: r["value"] for r in tables["meta"]}
    assert meta["smoke"] == "True" and float(meta["elapsed_s"]) > 0
    return tables


def test_smoke_run_numpy_and_ingest(tmp_path, capsys):
    assert probe.main(["--out", str(tmp_path), "--smoke", "--backend", "numpy"]) == 0
    t = _check_run(tmp_path, "numpy")
    variants = {r["variant"]: r["status"] for r in t["expert_loop"]}
    assert variants["loop"] == "ok" and variants["loop_graph"] == "skipped"
    assert any(r["dtype"] == "fp8_e4m3" and r["status"] == "skipped" for r in t["gemm"])
    assert [float(r["duty_target"]) for r in t["power"]] == [0.0, 1.0, 1.0]
    res = ingest.report(tmp_path, "H200")
    assert res["smoke"] and res["catalog"]["peak_bf16_tflops"] == 989
    assert 0 < res["gemm"]["mamf_bf16_fraction"] < 1
    assert res["expert"]["loop-bmm"]["n"] == len(P.EXPERT_MODELS) * 2 * 2
    assert res["bandwidth"]["copy_gb_s"] > 0
    assert "H200, 20" in res["citation"]
    capsys.readouterr()
    assert ingest.main([str(tmp_path), "--device-key", "H200"]) == 0
    assert "SMOKE RUN" in capsys.readouterr().out


def test_budget_cut_skips_and_says_so(tmp_path):
    assert probe.main(["--out", str(tmp_path), "--smoke", "--backend", "numpy", "--budget-s", "0.05",
                       "--sections", "gemm,bandwidth"]) == 0
    meta = {r["key"]: r["value"] for r in P.read_csv(tmp_path / "meta.csv")}
    assert int(meta["skipped_gemm"]) + int(meta["skipped_bandwidth"]) > 0
    assert not (tmp_path / "expert_loop.csv").exists()


def test_smoke_run_torch_cpu(tmp_path):
    pytest.importorskip("torch")
    assert probe.main(["--out", str(tmp_path), "--smoke", "--backend", "torch",
                       "--sections", "gemm,attention,bandwidth,power"]) == 0
    t = {n: P.read_csv(tmp_path / f"{n}.csv") for n in ("gemm", "attention", "bandwidth", "power")}
    assert all(r["backend"] == "torch-cpu" for r in t["gemm"])
    assert {r["pass"] for r in t["attention"] if r["status"] == "ok"} == {"fwd", "fwd_bwd"}
    assert {r["op"] for r in t["bandwidth"] if r["status"] == "ok"} >= {"copy", "clamp_glu_fwd_bwd"}


def test_torch_cpu_expert_variants_compute_the_same_products():
    torch = pytest.importorskip("torch")
    kit = importlib.import_module("probe_kits").TorchKit("cpu")
    v = kit.expert_variants(3, 8, 16, 4)
    assert set(v) in ({"loop", "bmm", "dense"}, {"loop", "bmm", "dense", "grouped"})
    if "grouped" in v:  # torch._grouped_mm's CPU fallback: the layouts the GPU run uses give the same products
        errs = [float(e) for e in v["grouped"].note.split()[-6:]]
        assert len(errs) == 6 and max(errs) < 1e-5, v["grouped"].note
    err = kit.check_experts(v)  # the loop and the batched kernel write the same six products
    assert err < 1e-5
    lazy = dict(v, bmm=lambda: v["loop"].outputs[0].zero_())  # writes one product wrong, leaves five unwritten
    assert kit.check_experts(lazy) == float("inf")
    half = dict(v, bmm=lambda: (v["bmm"](), v["loop"].outputs[2].mul_(1.5)))
    assert kit.check_experts(half) == pytest.approx(0.5, rel=1e-3)
    assert torch.isfinite(v["loop"].outputs[2]).all()


def test_ingest_on_hand_made_rows(tmp_path):
    sink = P.CsvSink(tmp_path)
    sink.write("meta", key="device", value="NVIDIA H200")
    sink.write("meta", key="date_utc", value="2026-12-01T10:00:00Z")
    for duty, w in ((0.0, 100.0), (0.5, 350.0), (1.0, 600.0)):
        sink.write("power", kernel="gemm_bf16", duty_target=duty, duty_measured=duty, watts_energy=w, status="ok")
    for e in (2, 8):
        for variant, t in (("bmm", 1e-3), ("loop_graph", 1e-3 + e * 2e-5), ("dense", 1e-3)):
            sink.write("expert_loop", model="m", variant=variant, experts=e, tokens_per_expert=256, median_s=t,
                       status="ok")
    sink.write("gemm", what="square", dtype="bf16", m=8192, n=8192, k=8192, tflops=791.2, status="ok")
    sink.write("gemm", what="square", dtype="fp8_e4m3", m=8192, n=8192, k=8192, tflops=1484.25, status="ok")
    sink.close()
    res = ingest.report(tmp_path)
    assert res["catalog"]["device"] == "H200" and not res["smoke"]
    assert res["gemm"]["mamf_bf16_fraction"] == pytest.approx(0.8, abs=1e-3)
    assert res["gemm"]["mamf_fp8_fraction"] == pytest.approx(0.75, abs=1e-3)
    assert res["expert"]["loop_graph-bmm"]["median"] == pytest.approx(2e-5)
    fit = res["power"]["fit"]
    assert fit["watts_at_0"] == pytest.approx(100) and fit["watts_per_duty"] == pytest.approx(500)
    assert fit["dynamic_share"] == pytest.approx(500 / 600)
    assert res["power"]["gemm_bf16@1"]["fraction_of_tdp"] == pytest.approx(600 / 700)
    assert "2026-12-01" in res["citation"]


def test_ingest_refuses_a_folder_without_meta(tmp_path):
    with pytest.raises(SystemExit) as e:
        ingest.main([str(tmp_path)])
    assert e.value.code == 2


class _SleepKit:
    """A kit whose 'kernel' is 2 ms of sleep: the duty-cycle driver's arithmetic without a GPU."""

    def sync(self):
        pass


def test_duty_window_keeps_its_duty_and_energy_gives_watts():
    import time

    power = importlib.import_module("probe_power")

    class Fake(power._ThreadSampler):
        name = "fake"

        def energy_mj(self):
            return 300.0 * 1e3 * time.monotonic()  # a steady 300 W

        def power_limit_w(self):
            return 700.0

        def sample(self):
            return {"watts": 300.0, "sm_clock_mhz": 1980, "gpu_util_pct": 50}

    s = power.duty_window(_SleepKit(), Fake(), lambda: time.sleep(0.002), 0.5, 0.6, period_s=0.1, preroll_s=0.0)
    assert s["duty_measured"] == pytest.approx(0.5, abs=0.15)
    assert s["watts_energy"] == pytest.approx(300.0, rel=1e-3)
    assert s["watts_median"] == 300.0 and s["power_limit_w"] == 700.0 and s["samples"] >= 3
    idle = power.duty_window(_SleepKit(), power.NullSampler(), lambda: None, 0.0, 0.2, preroll_s=0.0)
    assert idle["duty_measured"] < 0.05 and idle["samples"] == 0 and idle["calls"] == 0
