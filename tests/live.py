"""Start and stop real ``run.py`` engine processes for the live tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from tests.conftest import config_dict, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


class LiveEngine:
    """A ``run.py`` process with its web port, token, journal and output files.

    Parameters
    ----------
    tmp_path : Path
        Holds the config, the journal and the process's output.
    token : str or None
        Put in ``$OTRADE_TOKEN``; None leaves it unset so the engine generates one.
    env : dict, optional
        Extra environment variables (a broker's credentials).
    sections
        Config sections merged over ``tests.conftest.BASE_CONFIG``.
    """

    def __init__(
        self,
        tmp_path: Path,
        token: str | None = "test-token",
        env: dict[str, str] | None = None,
        **sections,
    ) -> None:
        self.port = free_port()
        self.token = token
        self.journal = tmp_path / "journal.jsonl"
        web = {"port": self.port, **sections.pop("web", {})}
        data = config_dict(journal={"path": str(self.journal)}, web=web, **sections)
        self.config = tmp_path / "engine.json"
        self.config.write_bytes(orjson.dumps(data))
        self.out = tmp_path / "out.txt"
        extra = env or {}
        env = {key: value for key, value in os.environ.items() if key != "OTRADE_TOKEN"}
        env.update(extra)
        if token is not None:
            env["OTRADE_TOKEN"] = token
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "run.py"), "--config", str(self.config)],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)
        try:
            wait_until(self._answers, timeout=60)
        except BaseException:
            self.process.kill()  # a start that never answers must not outlive the test
            self.process.wait(10)
            raise

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            code = self.process.returncode
            raise AssertionError(f"run.py exited {code}: {self.out.read_text()}")
        try:
            return self.http.get("/api/status").status_code == 200
        except httpx.TransportError:
            return False

    def auth(self, token: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token or self.token}"}

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.http.post(path, headers=self.auth(), **kwargs)

    def status(self) -> dict:
        return self.http.get("/api/status").json()

    def lines(self) -> list[dict]:
        return [orjson.loads(line) for line in self.journal.read_bytes().splitlines()]

    def stop(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.http.close()
        return code
