"""Grid sweeps: chunked on a process pool or a Dask LocalCluster, streamed to disk, resumable."""

from __future__ import annotations

import json

import pytest

from carbonscaling.errors import InputError
from carbonscaling.experiments.grid import (evaluate_chunk, grid_from_mapping, part_path, read_results, run_grid,
                                            write_chunk, columns)

from helpers import write_file

CARBON_GRID = {"name": "t", "kind": "carbon", "chunk_size": 5,
               "grid": {"device": ["H100", "A100-80GB"], "region": ["us-east5", "europe-west1", "atlantis"],
                        "n_devices": [8, 512], "utilization": [0.3, 0.6]},
               "fixed": {"duration_h": 100.0}}


def _fmt():
    try:
        import pyarrow  # noqa: F401

        return "parquet"
    except ImportError:
        return "csv"


def test_points_and_chunks_cover_the_grid_once():
    spec = grid_from_mapping(CARBON_GRID)
    assert spec.n_points == 24 and spec.n_chunks == 5
    pts = [spec.point(i) for i in range(spec.n_points)]
    assert len({json.dumps(p, sort_keys=True) for p in pts}) == 24
    assert pts[0]["device"] == "H100" and pts[-1]["device"] == "A100-80GB"   # first axis slowest
    rows = [r for c in range(spec.n_chunks) for r in evaluate_chunk(spec, c)]
    assert [r["point"] for r in rows] == list(range(24))


def test_rows_equal_run_carbon_and_bad_points_are_rows():
    from carbonscaling import run_carbon

    spec = grid_from_mapping(CARBON_GRID)
    rows = evaluate_chunk(spec, 0)
    r = rows[0]
    want = run_carbon(None, "H100", n_devices=8, duration_h=100.0, utilization=0.3, ci="us-east5")
    assert r["status"] == "ok" and r["total_tco2e"] == want.total_tco2e
    bad = [r for c in range(spec.n_chunks) for r in evaluate_chunk(spec, c) if r["region"] == "atlantis"]
    assert len(bad) == 8 and all(b["status"] == "input_error" and "atlantis" in b["reason"] for b in bad)


@pytest.mark.parametrize("data, field", [
    ({"grid": {"devcie": ["H100"]}}, "grid.devcie"),
    ({"grid": {"device": []}}, "grid"),
    ({"grid": {"device": ["H100"]}, "fixed": {"device": "B100"}}, "fixed.device"),
    ({"grid": {"device": ["H100"]}, "chunk_size": 0}, "chunk_size"),
    ({"kind": "carbon", "grid": {"tp": [1]}}, "grid.tp"),
])
def test_bad_grid_names_the_field(data, field):
    with pytest.raises(InputError) as err:
        grid_from_mapping(data)
    assert err.value.field == field


def test_resume_skips_finished_chunks_and_refuses_other_sweeps(tmp_path):
    fmt = _fmt()
    out = tmp_path / "sweep"
    first = run_grid(CARBON_GRID, out, jobs=1, fmt=fmt)
    assert first.chunks_run == 5 and first.chunks_skipped == 0
    full = read_results(out)
    # An interrupted run: two chunks missing, one half-written temporary file left behind.
    part_path(out, 1, fmt).unlink()
    part_path(out, 3, fmt).unlink()
    (out / f".part-000003.{fmt}.tmp").write_text("half")
    seen = []
    again = run_grid(CARBON_GRID, out, jobs=1, fmt=fmt, progress=lambda ph, d, t: seen.append(d))
    assert again.chunks_run == 2 and again.chunks_skipped == 3
    assert seen[0] == 3 and seen[-1] == 5
    assert not list(out.glob(".*.tmp"))
    assert read_results(out).drop(columns="seconds").equals(full.drop(columns="seconds"))
    with pytest.raises(InputError) as err:
        run_grid({**CARBON_GRID, "chunk_size": 7}, out, jobs=1, fmt=fmt)
    assert err.value.field == "out"


def test_estimate_grid_with_pinned_layouts(tmp_path):
    grid = {"kind": "estimate", "chunk_size": 2,
            "grid": {"region": ["us-east5", "europe-west1"], "devices": [64, 128]},
            "fixed": {"model": "megatron-1.7b", "device": "A100-80GB", "tp": 1, "pp": 1, "zero": 1,
                      "microbatch": 4, "interleave": 1, "recompute": "none"}}
    res = run_grid(grid, tmp_path / "g", jobs=1, fmt="csv")
    df = read_results(res.out)
    assert list(df["status"]) == ["ok"] * 4
    assert list(df["devices"]) == [64, 128, 64, 128]
    assert (df["dp"] == df["devices"]).all()


def test_chunk_files_are_complete_or_absent(tmp_path):
    spec = grid_from_mapping(CARBON_GRID)
    cols = columns(spec)
    p = tmp_path / "part-000000.csv"
    write_chunk(p, evaluate_chunk(spec, 0), cols, "csv")
    assert p.read_text().splitlines()[0].split(",") == list(cols)
    assert not list(tmp_path.glob(".*"))


def test_small_sweep_on_a_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    res = run_grid(CARBON_GRID, tmp_path / "dask", scheduler="local", jobs=2, fmt=_fmt())
    assert res.executor.startswith("Dask") and res.chunks_run == 5
    pool = run_grid(CARBON_GRID, tmp_path / "pool", jobs=1, fmt=_fmt())
    assert read_results(res.out).drop(columns="seconds").equals(read_results(pool.out).drop(columns="seconds"))


def test_scheduler_names_are_checked():
    from carbonscaling.experiments.executors import open_executor

    with pytest.raises(InputError) as err:
        with open_executor("nonsense", 1):
            pass
    assert err.value.field == "scheduler"


def test_progress_lines_when_not_a_terminal(tmp_path, capsys):
    import yaml

    from carbonscaling.cli import main

    grid = write_file(tmp_path, "grid.yaml", yaml.safe_dump(CARBON_GRID))
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [x for x in err if x.startswith("chunks ")]
    assert [x.split()[1] for x in lines] == [f"{i}/5" for i in range(1, 6)]
    assert all(x.endswith("s elapsed") for x in lines)
    # the same command again: every chunk is on disk, nothing runs
    assert main(["sweep", str(grid), "--out", str(out), "--jobs", "1", "--format", "csv"]) == 0
    assert "0 run, 5 already done" in capsys.readouterr().out


def test_sweep_cli_bad_scheduler_is_one_line(tmp_path, capsys):
    import yaml

    from carbonscaling.cli import main

    grid = write_file(tmp_path, "grid.yaml", yaml.safe_dump(CARBON_GRID))
    assert main(["sweep", str(grid), "--out", str(tmp_path / "o"), "--scheduler", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: scheduler") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
