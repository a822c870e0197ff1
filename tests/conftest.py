"""Shared test fixtures: a scripted fake OpenAI-compatible server (see tests/fake_llm.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # lets every test file `from fake_llm import FakeLLM, Reply`

from fake_llm import FakeLLM  # noqa: E402


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A running fake LLM server on 127.0.0.1 (`.base_url`, `.push()`, `.set_handler()`, `.requests`)."""
    with FakeLLM() as server:
        yield server
