"""Running `vcc` in a child process and killing it midway, for the resume tests.

Importable from any test module: pytest puts this folder on sys.path for tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def vcc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def run_vcc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`vcc ARGS` in a child process, its output captured as text."""
    return subprocess.run(vcc_command(*args), capture_output=True, text=True, timeout=timeout)


def kill_when(cmd: list[str], ready, timeout: float = 240.0) -> bool:
    """Start cmd; SIGKILL its driver once ready() holds. Returns whether it was killed midway."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    time.sleep(1.0)
    try:  # the embedded Ray's own processes outlive a killed driver; end them too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return killed
