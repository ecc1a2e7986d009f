"""Ctrl-C on ``carbonscaling paper``: seconds from SIGINT to exit, exit status, stderr, files left.

Starts ``carbonscaling paper --out DIR`` in its own process group, sends SIGINT to the
whole group (what a terminal's Ctrl-C does) after ``--after`` seconds, and reports how
long the CLI took to exit, its stderr and every file left in (and next to) ``DIR``.

    python benchmarks/bench_interrupt.py --after 5 8 12
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(after: float, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "paper-out"
        cmd = [sys.executable, "-m", "carbonscaling", "paper", "--out", str(out), "--no-progress", *extra]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(after)
        t0 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        exit_s = time.perf_counter() - t0
        time.sleep(0.5)  # let any orphaned worker finish dying before counting
        left = sorted(str(p.relative_to(d)) for p in Path(d).rglob("*"))
        try:  # workers still alive in the group?
            os.killpg(proc.pid, 0)
            orphans = True
        except ProcessLookupError:
            orphans = False
    text = err.decode(errors="replace")
    return {"after_s": after, "exit_s": round(exit_s, 2), "rc": proc.returncode, "files_left": left,
            "stderr_lines": len(text.splitlines()), "traceback": "Traceback" in text, "orphans": orphans,
            "stderr": text.strip()[-300:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--after", type=float, nargs="+", default=[5.0, 10.0])
    ap.add_argument("extra", nargs="*", help="extra arguments for `paper` (after --)")
    a = ap.parse_args()
    for after in a.after:
        print(one(after, a.extra), flush=True)


if __name__ == "__main__":
    main()
