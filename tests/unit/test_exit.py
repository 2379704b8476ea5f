"""The commands' quick exit: what a normal exit does first, then no teardown (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import PROJECT


def test_exit_now_joins_threads_runs_exit_hooks_and_flushes_before_it_leaves(tmp_path):
    script = tmp_path / "command.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit, threading, time, sys
            from pathlib import Path
            from flows.env import exit_now

            out = Path({str(tmp_path)!r})

            def late():
                time.sleep(0.3)
                (out / "thread").write_text("joined")

            threading.Thread(target=late).start()
            threading._register_atexit(lambda: (out / "hook").write_text("drained"))
            atexit.register(lambda: (out / "atexit").write_text("ran"))
            sys.stdout.write("buffered, no newline")
            exit_now(3)
            (out / "after").write_text("not reached")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe buffers
    env["PYTHONPATH"] = str(PROJECT)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "thread").read_text() == "joined"  # a non-daemon thread ran to its end
    assert (tmp_path / "hook").read_text() == "drained"  # threading's exit hooks (Prefect's)
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "after").exists()
