"""`costslo run` as a user starts it, against the lab: start, stop, kill, and read its log."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import IO, Any

from tests.support.lab import REPO, Lab

COSTSLO = str(REPO / ".venv" / "bin" / "costslo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """One operator process at a time; `start` again after `kill` is a restart with the same log."""

    def __init__(
        self, lab: Lab, log_path: Path, interval: str = "5s", *extra: str, kubeconfig: str | None = None
    ) -> None:
        self.lab, self.log_path, self.interval, self.extra = lab, log_path, interval, extra
        self.kubeconfig = (
            kubeconfig or lab.kubeconfig
        )  # another identity's kubeconfig, e.g. a ServiceAccount's
        self.http_port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("a")
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PROMETHEUS_URL": self.lab.prometheus_url,
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed operator's last lines still reach the log
        }
        self.proc = subprocess.Popen(
            [
                COSTSLO,
                "run",
                "--interval",
                self.interval,
                "--log-format",
                "json",
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
                "--http",
                f"127.0.0.1:{self.http_port}",
                *self.extra,
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as when a node dies."""
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self, message: str | None = None) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if message is None or entry.get("event") == message:
                lines.append(entry)
        return lines
