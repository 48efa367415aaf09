"""Running `guichet run` as a real process, as an operator would, for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def config_copy(target: Path, **settings: object) -> Path:
    """A copy of the sample configuration with some settings changed (nested keys as dicts)."""
    shutil.copytree(ROOT / "config", target)
    path = target / "guichet.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    _merge(data, settings)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


def _merge(base: dict[str, object], extra: dict[str, object]) -> None:
    for key, value in extra.items():
        current = base.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        else:
            base[key] = value


class GuichetProcess:
    def __init__(
        self, config_dir: Path, data_dir: Path, port: int, env: dict[str, str] | None = None
    ) -> None:
        self.config_dir, self.data_dir, self.port = config_dir, data_dir, port
        # SMTP on a free port too: several processes (and test runs) side by side.
        self.env = {**os.environ, "GUICHET_DATA_DIR": str(data_dir), "GUICHET_SMTP_PORT": "0", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"
        self.log = data_dir.parent / f"guichet-{port}.log"

    def wait_for_model(self, timeout: float = 120.0) -> None:
        """Wait until the intent model is loaded or trained (it is trained in the background)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                if json.loads(answer.read()).get("intent_model") == "ready":
                    return
            time.sleep(0.1)
        raise RuntimeError(f"no intent model after {timeout} s:\n{self.log.read_text()}")

    def start(self, timeout: float = 15.0) -> float:
        """Start and wait until /healthz answers; returns the seconds it took."""
        started = time.monotonic()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bot.cli",
                    "run",
                    "--config",
                    str(self.config_dir),
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"guichet exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=0.5) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"guichet did not answer within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of our own on a free port, keeping nothing on disk; (process, URL)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")
