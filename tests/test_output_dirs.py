"""Output directories (``paper``/``sweep``/``validate --out``) and Ctrl-C: one line naming
--out, exit status 2, and nothing half-written (``_output.staged_dir``, ``runner.stop_pool``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from carbonscaling._output import check_target, staged_dir
from carbonscaling.cli import main
from carbonscaling.errors import InputError

from helpers import write_file

TINY = {
    "name": "tiny", "title": "tiny sweep", "plot": "loss_vs_carbon",
    "models": {"preset": "cs-v1", "d_model": [2048]},
    "base": {"device": "H100", "deadline_days": 90},
    "series": [{"label": "H100"}],
}


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def scenario(tmp_path) -> Path:
    return write_file(tmp_path, "tiny.yaml", yaml.safe_dump(TINY))


def _bad_targets(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    return {"": "empty", "/dev/null": "not a directory", str(tmp_path / "afile"): "not a directory",
            str(tmp_path / "afile" / "sub"): "is not a directory", "/proc/carbonscaling-test": "not writable"}


def test_check_target_rejects_non_directories(tmp_path):
    for target, needle in _bad_targets(tmp_path).items():
        with pytest.raises(InputError, match=needle) as err:
            check_target(target)
        assert err.value.field == "out"
    assert check_target(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


@pytest.mark.parametrize("cmd", ["paper", "sweep", "validate"])
def test_bad_out_is_one_line_exit_2_before_any_work(cmd, tmp_path, scenario, capsys):
    for target, needle in _bad_targets(tmp_path).items():
        argv = {"paper": ["paper", "--only", "v1-fig4", "--no-progress"],
                "sweep": ["sweep", str(scenario), "--no-progress"], "validate": ["validate"]}[cmd]
        t0 = time.perf_counter()
        assert main([*argv, "--out", target]) == 2, target
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: out (--out): ") and needle in err, err
        assert time.perf_counter() - t0 < 5  # fails before the searches, not after
    assert _listing(tmp_path) == ["afile", "tiny.yaml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path, scenario, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["sweep", str(scenario), "--out", str(ro / "o"), "--no-progress"]) == 2
        assert "--out" in capsys.readouterr().err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_clash_in_existing_out_leaves_nothing(tmp_path, scenario, capsys):
    out = tmp_path / "o"
    (out / "report.md").mkdir(parents=True)
    assert main(["sweep", str(scenario), "--out", str(out), "--jobs", "1", "--no-progress", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "report.md" in err
    assert _listing(tmp_path) == ["o", "o/report.md", "tiny.yaml"]


def test_sweep_into_existing_directory_replaces_and_keeps(tmp_path, scenario, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    (out / "report.md").write_text("old", encoding="utf-8")
    assert main(["sweep", str(scenario), "--out", str(out), "--jobs", "1", "--no-progress", "--no-figures"]) == 0
    assert (out / "mine.txt").read_text(encoding="utf-8") == "keep"
    assert (out / "report.md").read_text(encoding="utf-8") != "old"
    assert (out / "tiny" / "tiny.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_staged_dir_cleans_up_on_error_and_interrupt(tmp_path):
    for exc in (RuntimeError, KeyboardInterrupt):
        target = tmp_path / "a" / "b" / "out"
        with pytest.raises(exc):
            with staged_dir(target) as tmp:
                (tmp / "half.csv").write_text("x", encoding="utf-8")
                raise exc()
        assert list(tmp_path.iterdir()) == []  # not even the parents it created
    with staged_dir(tmp_path / "new") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.csv").write_text("1", encoding="utf-8")
    assert _listing(tmp_path) == ["new", "new/sub", "new/sub/f.csv"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700


# Ctrl-C: a process started in the background of a non-interactive shell inherits SIGINT ignored
# (CI may run us so); a user's terminal delivers it to Python's default handler. SIGTERM: the
# default action, unless the test runner itself handles it.
@pytest.mark.parametrize("signum, handler", [
    pytest.param(signal.SIGINT, signal.default_int_handler, id="ctrl-c"),
    pytest.param(signal.SIGTERM, signal.SIG_DFL, id="sigterm", marks=pytest.mark.skipif(
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM handled by the runner")),
])
def test_a_signal_prints_aborted_and_leaves_nothing(tmp_path, scenario, capsys, monkeypatch, signum, handler):
    """A real SIGINT or SIGTERM during a sweep: the CLI's own line, exit 130, no partial output,
    and the signal's handler as it was."""
    import carbonscaling.experiments.paper as paper

    def interrupted(*a, **k):
        os.kill(os.getpid(), signum)
        time.sleep(5)
        raise AssertionError(f"{signal.Signals(signum).name} did not interrupt")

    monkeypatch.setattr(paper, "_run_into", interrupted)
    previous = signal.signal(signum, handler)
    try:
        code = main(["sweep", str(scenario), "--out", str(tmp_path / "o"), "--no-progress"])
    finally:
        restored = signal.getsignal(signum)
        signal.signal(signum, previous)
    assert code == 130
    assert capsys.readouterr().err == "error: aborted\n"
    assert _listing(tmp_path) == ["tiny.yaml"]
    assert restored is handler  # restored


def test_stop_pool_cancels_queued_work_at_once():
    from carbonscaling.experiments.runner import worker_pool

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with worker_pool(2) as pool:
            futs = [pool.submit(time.sleep, 30) for _ in range(6)]
            procs = list(pool._processes.values())
            time.sleep(0.2)
            raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 10
    assert all(f.cancelled() or f.done() for f in futs[2:])
    assert not any(p.is_alive() for p in procs)


