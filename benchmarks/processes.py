"""Running an import command and measuring its memory: its own peak RSS, and the peak of the sum over
it and its worker processes (sampled every 0.1 s: the target is what the machine must hold)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass

import psutil


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    own_peak_mb: float
    all_peak_mb: float


def run_measured(command: list[str], env: dict) -> Finished:
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.wait(0.1):
            try:
                members = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for member in members:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += member.memory_info().rss
            peak[0] = max(peak[0], total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr_reader = threading.Thread(target=lambda: setattr(process, "_err", process.stderr.read()), daemon=True)
    stderr_reader.start()
    stdout = process.stdout.read()
    stderr_reader.join()
    # wait4 gives this child's own peak RSS, not the maximum over every child so far.
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    sampler.join()
    own = usage.ru_maxrss / 1024
    return Finished(
        returncode=os.waitstatus_to_exitcode(status),
        stdout=stdout,
        stderr=process._err,
        own_peak_mb=own,
        all_peak_mb=max(peak[0] / 2**20, own),
    )
