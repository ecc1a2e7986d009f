"""The hardware catalog (carbonscaling.hardware): today's systems from the shared CSV with
their sources and per-cell flags, number-format peaks per device, and the device-file
round trip through ``carbonscaling devices --json`` / ``--device-file``."""

from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling._data import data_path
from carbonscaling.cli import main
from carbonscaling.errors import InputError
from carbonscaling.formats import PRECISIONS, canonical_precision, number_format
from carbonscaling.hardware import (
    CELL_FLAGS, Device, describe, device_names, example_device_file, load_system, system_from_file,
    system_from_mapping, unverified_cells,
)

ROWS = {r["accelerator"]: r for r in csv.DictReader(data_path("hardware_modern.csv").open(encoding="utf-8"))}
MODERN = {load_system(n).device.catalog_row: load_system(n) for n in device_names() if load_system(n).device.catalog_row}
REQUIRED = ("H100", "H200", "H20", "B200", "B300", "GB200", "GB300", "MI300X", "MI325X", "MI355X",
            "TPUv5e", "TPUv5p", "TPUv6e", "TPU7x", "Gaudi3", "Trainium2")
FLAGGED_DEVICE_FIELDS = ("peak_tflops", "hbm_gb", "hbm_gb_s", "scale_up_gb_s", "tdp_w", "die_area_mm2",
                         "process_node", "hbm_type", "compute_units", "sram_mb")
FLAGGED_SYSTEM_FIELDS = ("devices_per_node", "scale_up_domain", "scale_out_gbit_s", "node_other_power_w")


def _num(cell: str):
    return float(cell) if cell.strip() else None


# ---- completeness and sources --------------------------------------------------------
def test_every_csv_row_is_one_catalog_entry():
    assert set(MODERN) == set(ROWS)
    for want in REQUIRED:  # the list, matched loosely against the CSV's names
        assert any(want.lower() in row.lower().replace(" ", "").replace("-", "") or
                   want.lower().replace("v", "") in row.lower() for row in ROWS), want


@pytest.mark.parametrize("row", sorted(ROWS))
def test_catalog_values_are_the_csv_cells(row):
    r, s = ROWS[row], MODERN[row]
    d = s.device
    pairs = [("dense_bf16_fp16_tflops", d.peak_tflops), ("dense_fp8_tflops", d.peak_tflops_fp8),
             ("dense_fp4_tflops", d.peak_tflops_fp4), ("hbm_gb", d.hbm_gb), ("hbm_gb_s", d.hbm_gb_s),
             ("scale_up_gb_s_per_device", d.scale_up_gb_s), ("tdp_w", d.tdp_w), ("die_area_mm2", d.die_area_mm2),
             ("scale_up_domain", s.scale_up_domain), ("scale_out_gbit_s_per_device", s.scale_out_gbit_s),
             ("ref_system_max_power_w", s.ref_system_max_power_w), ("n_dies", d.n_dies)]
    for col, ours in pairs:
        cell = _num(r[col])
        if cell is not None:
            assert ours == pytest.approx(cell), (row, col)
        elif col in ("dense_fp8_tflops", "dense_fp4_tflops"):
            assert ours is None, (row, col)  # never a rate the source does not give
    assert s.ref_system == r["ref_system"]
    assert r["sources"] in d.source  # the CSV's sources travel with the entry


@pytest.mark.parametrize("row", sorted(ROWS))
def test_every_cell_has_a_flag_and_every_assumption_a_reason(row):
    s = MODERN[row]
    flags = s.device.cell_flags
    for f in FLAGGED_DEVICE_FIELDS:
        assert f in flags, (row, f)
    for f in FLAGGED_SYSTEM_FIELDS:
        assert f"system.{f}" in flags, (row, f)
    assert set(flags.values()) <= set(CELL_FLAGS)
    csv_flags = dict(p.strip().split("=", 1) for p in ROWS[row]["verification"].split(";") if "=" in p)
    assert flags["peak_tflops"] == csv_flags["bf16"].split()[0]  # the source's flag, not ours
    for field, flag in flags.items():
        if flag == "assumed":
            assert field in s.device.verification, (row, field)  # says what was assumed and why
    for col, field in (("tdp_w", "tdp_w"), ("die_area_mm2", "die_area_mm2"),
                       ("scale_out_gbit_s_per_device", "system.scale_out_gbit_s")):
        if _num(ROWS[row][col]) is None:  # an empty source cell is never reported as verified
            assert flags[field] in ("assumed", "paper", "unverified"), (row, field)


def test_unverified_cells_list_the_assumptions():
    assert unverified_cells(load_system("H100-SXM")) == {}
    tpu = unverified_cells(load_system("TPU-v5e"))
    assert tpu["tdp_w"] == "assumed" and tpu["die_area_mm2"] == "assumed"
    assert "system.node_other_power_w" in unverified_cells(load_system("B300"))


@pytest.mark.parametrize("alias, key", [("DGX-H100", "H100-SXM"), ("DGX-B200", "B200"), ("DGX-B300", "B300"),
                                        ("DGX-GB200", "GB200"), ("DGX-GB300", "GB300"), ("Trillium", "TPU-v6e"),
                                        ("ironwood", "TPU7x"), ("Gaudi 3", "Gaudi3"), ("trn2", "Trainium2")])
def test_system_names_resolve(alias, key):
    assert load_system(alias).name == key


def test_paper_entries_are_unchanged():
    # The papers' tables (v1 Table 2, v2 Table 1) stay exactly as printed.
    expect = {"V100": 119.2, "A100": 312, "H100": 989.4, "B100": 1980, "TPUv4": 275, "TPUv5p": 459}
    for name, tf in expect.items():
        d = load_system(name).device
        assert d.peak_tflops == tf and d.catalog_row == ""
    assert load_system("H100").device.hbm_gb_s == 3352 and load_system("B100").device.tdp_w == 700


def test_reference_systems():
    gb = load_system("GB200")
    assert (gb.devices_per_node, gb.scale_up_domain, gb.scale_out_gbit_s) == (4, 72, 400)
    # 120 kW rack over 18 four-GPU trays, less 4 x 1200 W: what the tray adds beyond its GPUs.
    assert gb.node_other_power_w == pytest.approx(120000 / 18 - 4 * 1200, abs=0.1)
    b3 = load_system("GB300")
    assert b3.scale_out_gbit_s == 800 and b3.node_other_power_w == pytest.approx(135000 / 18 - 4 * 1400)
    assert load_system("B200").node_other_power_w == 14300 - 8 * 1000
    assert load_system("TPU7x").scale_up_domain == 9216 and load_system("Trainium2").devices_per_node == 16


def test_blackwell_sm_counts_are_the_products_not_the_die():
    # CUDA reports 148 SMs on B200 and B300, 152 on GB200 and GB300; NVIDIA's 160 is the full die.
    sms = {n: load_system(n).device.compute_units for n in ("B200", "B300", "GB200", "GB300")}
    assert sms == {"B200": 148, "B300": 148, "GB200": 152, "GB300": 152}
    # Same dense BF16 peak on the same SMs -> the same implied clock (catalog peak / (SMs x 8192 FLOP/clk)).
    clk = {n: load_system(n).device.peak_tflops * 1e12 / (sms[n] * 8192) for n in sms}
    assert clk["B300"] == pytest.approx(clk["B200"]) and clk["GB300"] == pytest.approx(clk["GB200"])
    assert all(1.7e9 < f < 2.1e9 for f in clk.values())  # between the spec boost and observed max clocks


def test_borrowed_gemm_maxima_are_flagged_assumed():
    # No GB300 matmul measurement exists: both of its GEMM maxima are B300's fractions, never 'measured'.
    gb3 = load_system("GB300").device
    b3 = load_system("B300").device
    assert gb3.cell_flags["gemm_efficiency_max"] == gb3.cell_flags["gemm_efficiency_max_fp8"] == "assumed"
    assert (gb3.gemm_efficiency_max, gb3.gemm_efficiency_max_fp8) == (b3.gemm_efficiency_max, b3.gemm_efficiency_max_fp8)
    gb2 = load_system("GB200").device  # measured MAMF 1822 / 3615.6 TFLOPS against this catalog's 2450 / 4900
    assert gb2.gemm_efficiency_max * gb2.peak_tflops == pytest.approx(1822, abs=2)
    assert gb2.gemm_efficiency_max_fp8 * gb2.peak_tflops_fp8 == pytest.approx(3615.6, abs=3)


# ---- number formats ---------------------------------------------------------------------
FP8 = {r: _num(ROWS[r]["dense_fp8_tflops"]) for r in ROWS}
FP4 = {r: (_num(ROWS[r]["dense_fp4_tflops"]), ROWS[r]["fp4_format"]) for r in ROWS}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_fp8_and_fp4_rates_per_device(row):
    d = MODERN[row].device
    assert d.peak_flops("bf16") == pytest.approx(1e12 * _num(ROWS[row]["dense_bf16_fp16_tflops"]))
    if FP8[row] is None:
        with pytest.raises(InputError, match="does not run fp8"):
            d.peak_flops("fp8")
    else:
        assert d.peak_flops("fp8") == pytest.approx(1e12 * FP8[row])
    rate, fmt = FP4[row]
    if rate is None:
        for f in ("nvfp4", "mxfp4"):
            with pytest.raises(InputError, match=f"does not run {f}"):
                d.peak_flops(f)
    else:
        named = "nvfp4" if fmt.startswith("NVFP4") else "mxfp4"
        assert d.peak_flops(named) == pytest.approx(1e12 * rate)


def test_formats_by_family():
    assert load_system("B200").device.peak_flops("mxfp8") == pytest.approx(4.5e15)
    assert load_system("GB300").device.peak_flops("FP8-MX") == pytest.approx(4.9e15)  # Megatron-Bridge's label
    for name, fmt in (("H100-SXM", "mxfp8"), ("H100-SXM", "nvfp4"), ("MI300X", "mxfp4"), ("MI355X", "nvfp4"),
                      ("TPU-v5e", "fp8")):
        with pytest.raises(InputError) as err:
            load_system(name).device.peak_flops(fmt)
        assert err.value.field == "precision" and "\n" not in str(err.value)
    assert load_system("MI355X").device.peak_flops("mxfp4") == pytest.approx(10.1e15)


@pytest.mark.parametrize("name", ["A100", "A100-40GB", "A100-80GB", "TPUv5p"])
def test_int8_only_devices_refuse_fp8_but_keep_the_papers_qat_rate(name):
    # Ampere and the papers' TPUv5p list an INT8 rate, not FP8 tensor cores: a user's fp8 is
    # refused, while the papers' QAT knob (fp8-qat) still runs at that 8-bit rate.
    device = load_system(name).device
    with pytest.raises(InputError) as err:
        device.peak_flops("fp8")
    assert err.value.field == "precision" and ("(it runs bf16)" if "TPU" in name else "bf16, fp16") in str(err.value)
    assert device.peak_flops("fp8-qat") == pytest.approx(1e12 * device.peak_tflops_fp8)
    assert device.peak_flops("fp8-qat") > 2 * device.peak_flops("bf16") * 0.99


def test_format_vocabulary_and_bytes():
    assert canonical_precision("FP8-CS") == "fp8" and canonical_precision("fp8_mx") == "mxfp8"
    with pytest.raises(InputError, match="precision"):
        canonical_precision("int4")
    assert set(PRECISIONS) == {"bf16", "fp16", "fp8", "fp8-delayed", "fp8-blockwise", "mxfp8", "nvfp4", "mxfp4"}
    # MXFP8: 1 byte per element + one E8M0 byte per 32; NVFP4: half a byte + one E4M3 byte per 16.
    assert number_format("mxfp8").stored_bytes == pytest.approx(1 + 1 / 32)
    assert number_format("nvfp4").stored_bytes == pytest.approx(0.5 + 1 / 16)
    # Per-tensor current scaling: amax read + cast (2 + 2 + 1) and an FP8 transpose (1 + 1).
    assert number_format("fp8").quantize_bytes() == pytest.approx(7.0)
    # Delayed scaling skips the amax read; MXFP8 quantizes BF16 twice (row- and column-wise).
    assert number_format("fp8-delayed").quantize_bytes() == pytest.approx(5.0)
    assert number_format("mxfp8").quantize_bytes() == pytest.approx(2 * (2 + 1 + 1 / 32))
    assert number_format("bf16").quantize_bytes() == 0


def test_a_format_without_a_rate_is_rejected():
    entry = describe(load_system("H100-SXM"))
    entry["formats"] = ["bf16", "nvfp4"]
    with pytest.raises(InputError, match="peak_tflops_fp4"):
        system_from_mapping(entry)
    entry["formats"] = ["bf16"]
    entry["cell_flags"] = {"tdp_w": "probably"}
    with pytest.raises(InputError, match="cell_flags"):
        system_from_mapping(entry)


# ---- device files -----------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.sampled_from(device_names()))
def test_describe_round_trips_every_catalog_device(name):
    s = load_system(name)
    again = system_from_mapping(json.loads(json.dumps(describe(s))))
    assert again == s


def test_cli_devices_json_is_a_device_file(capsys, tmp_path):
    assert main(["devices", "DGX-GB200", "--json"]) == 0
    out, _ = capsys.readouterr()
    f = tmp_path / "gb200.json"
    f.write_text(out)
    assert system_from_file(f) == load_system("GB200")
    # ... and the whole list filtered to one device is accepted too
    assert main(["devices", "--json"]) == 0
    recs = json.loads(capsys.readouterr()[0])
    f.write_text(json.dumps([r for r in recs if r["name"] == "H20"]))
    assert system_from_file(f) == load_system("H20")
    code = main(["carbon", "--device-file", str(f), "--devices", "8", "--device-hours", "80", "--utilization",
                 "0.4", "--json"])
    assert code == 0 and json.loads(capsys.readouterr()[0])["device"]["name"] == "H20"


def test_example_device_file_ships_and_loads(capsys, tmp_path):
    assert main(["devices", "--example"]) == 0
    text = capsys.readouterr()[0]
    assert text == example_device_file()
    f = tmp_path / "dev.yaml"
    f.write_text(text)
    s = system_from_file(f)
    assert s.name == "H100-200G" and s.scale_out_gbit_s == 200
    ref = load_system("H100-SXM").device  # the example says its values are the catalog's, but for the NIC
    for field in ("peak_tflops", "peak_tflops_fp8", "hbm_gb", "hbm_gb_s", "tdp_w", "compute_units"):
        assert getattr(s.device, field) == getattr(ref, field)


def test_example_device_file_answers_as_the_catalog_entry_with_its_nic(capsys, tmp_path):
    """The example is 'the catalog's H100-SXM with a 200 Gb/s NIC': its estimate is that entry's
    (devices --json) with only the NIC changed. It left out the softmax (SFU), TF32, host-link and
    system-power cells, so a planner comparing it with H100-SXM saw the missing cells, not the NIC
    (deepseek-v3: 1,920 devices and 1,474 t instead of 1,936 and 1,405)."""
    assert main(["devices", "--example"]) == 0
    ex = tmp_path / "ex.yaml"
    ex.write_text(capsys.readouterr()[0])
    assert main(["devices", "H100-SXM", "--json"]) == 0
    rec = json.loads(capsys.readouterr()[0])
    rec["system"]["scale_out_gbit_s"] = 200
    ref = tmp_path / "sxm200.json"
    ref.write_text(json.dumps(rec))
    got = []
    for f in (ex, ref):
        assert main(["estimate", "-m", "deepseek-v3", "--device-file", str(f), "--no-uncertainty",
                     "--no-median-carbon", "--json"]) == 0
        d = json.loads(capsys.readouterr()[0])
        got.append((d["layout"], d["performance"]["step_time_s"], d["carbon"]["total_tco2e"]))
    assert got[0] == got[1]


def test_device_model_rejects_unknown_fields():
    with pytest.raises(Exception):
        Device(name="x", peak_tflops=1, hbm_gb=1, hbm_gb_s=1, scale_up_gb_s=1, tdp_w=1, die_area_mm2=1,
               process_node="5nm", hbm_type="HBM3", compute_units=1, sram_mb=1, peak_tflops_int4=3)
