"""Providers against loopback fakes: "provider/model" naming, prices and cost per call, the per-call deadline,
Retry-After, benching around a failing model, and Anthropic's native API."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic
from fake_llm import FakeLLM, Reply
from helpers import SLACK_S, llm_task

from evoforge.config import LLMSettings, ModelSpec, Price
from evoforge.errors import EvoforgeError
from evoforge.llm import ChatClient, LLMError, client_for_spec
from evoforge.llm.anthropic_client import AnthropicClient
from evoforge.llm.client import LLMClient
from evoforge.llm.pricing import price_for
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.research import LLMProposer, ResearchContext, make_proposer
from evoforge.task.loader import Task

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello world"}]
PARENT = "x = 1.0\n"
EDIT = "NAME: n\nMOTIVATION: m\n<<<<<<< SEARCH\nx = 1.0\n=======\nx = 2.0\n>>>>>>> REPLACE\n"


def run_complete(client: ChatClient, temperature: float | None = None) -> tuple[str, object]:
    return asyncio.run(client.complete(MESSAGES, role="researcher", temperature=temperature))


def fast(client: ChatClient) -> ChatClient:
    client.backoff_base_s = 0.01
    return client


def warmed(fake: FakeLLM, **settings: object) -> ChatClient:
    """A client for model "m" on `fake` after one call (the SDK's first request in a process imports for seconds)."""
    client = fast(LLMClient(model="m", base_url=fake.base_url, api_key=None, settings=LLMSettings(**settings)))
    fake.push("warm-up")
    run_complete(client)
    fake.requests.clear()
    return client


def test_names_split_into_provider_and_api_model(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(name="openrouter/meta-llama/llama-3-8b", base_url=fake_llm.base_url)
    assert (spec.provider, spec.api_model) == ("openrouter", "meta-llama/llama-3-8b")
    assert (ModelSpec(name="gpt-4o").provider, ModelSpec(name="gpt-4o").api_model) == ("openai", "gpt-4o")
    fake_llm.push("hi")
    text, call = run_complete(client_for_spec(spec, LLMSettings()))
    assert fake_llm.requests[0]["model"] == "meta-llama/llama-3-8b"  # the provider prefix is not sent
    assert call.model == "openrouter/meta-llama/llama-3-8b"  # ... but recorded
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(EvoforgeError, match="ANTHROPIC_API_KEY"):
        client_for_spec(ModelSpec(name="anthropic/claude-haiku-4-5"), LLMSettings())
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert isinstance(client_for_spec(ModelSpec(name="anthropic/claude-haiku-4-5"), LLMSettings()), AnthropicClient)
    with pytest.raises(EvoforgeError, match="base_url"):
        client_for_spec(ModelSpec(name="myhost/some-model"), LLMSettings())
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or")
    assert client_for_spec(ModelSpec(name="openrouter/x"), LLMSettings()).base_url == "https://openrouter.ai/api/v1"


def test_price_table_lookup_and_overrides(caplog: pytest.LogCaptureFixture) -> None:
    assert price_for(ModelSpec(name="openai/gpt-4o-2024-08-06")) == Price(input=2.5, output=10.0)
    assert price_for(ModelSpec(name="gpt-4o-mini")) == Price(input=0.15, output=0.6)  # its own entry, not gpt-4o's
    assert price_for(ModelSpec(name="gpt-4o-latest")) == Price(input=2.5, output=10.0)
    assert price_for(ModelSpec(name="anthropic/claude-3-5-haiku-20241022")) == Price(input=0.8, output=4.0)
    user = {"openai/gpt-4o": Price(input=1.0, output=2.0)}
    assert price_for(ModelSpec(name="openai/gpt-4o"), user) == Price(input=1.0, output=2.0)
    assert price_for(ModelSpec(name="gpt-4o", price_in=7, price_out=8), user) == Price(input=7, output=8)
    with caplog.at_level(logging.WARNING, logger="evoforge.llm"):
        for _ in range(3):
            assert price_for(ModelSpec(name="acme/mystery-model")) == Price(input=0, output=0)
        assert price_for(ModelSpec(name="claude-opus-4-99")) == Price(input=0, output=0)  # a newer version: unknown
        assert price_for(ModelSpec(name="local/tiny")) == Price(input=0, output=0)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "acme/mystery-model" in warnings[0] and "claude-opus-4-99" in warnings[1]


def test_cost_is_usage_times_price_and_temperature_is_recorded(fake_llm: FakeLLM) -> None:
    spec = ModelSpec(name="fake/priced", base_url=fake_llm.base_url, price_in=2.0, price_out=30.0)
    fake_llm.push("one two three")
    _, call = run_complete(client_for_spec(spec, LLMSettings(temperature=0.4)))
    assert (call.tokens_in, call.tokens_out) == (5, 3)  # the fake counts words
    assert call.cost_usd == pytest.approx((5 * 2.0 + 3 * 30.0) / 1e6)
    assert call.temperature == 0.4 and fake_llm.requests[0]["temperature"] == 0.4
    fake_llm.push("x")
    _, call = run_complete(client_for_spec(spec, LLMSettings()), temperature=1.3)
    assert call.temperature == 1.3 and fake_llm.requests[1]["temperature"] == 1.3


def test_retry_after_beyond_the_deadline_stops_at_once(fake_llm: FakeLLM) -> None:
    # a client that slept towards the Retry-After would use its whole deadline (30 s), or ask again
    client = warmed(fake_llm, deadline_s=30.0, max_retries=5)
    fake_llm.push(Reply.error(429, retry_after="600"), "never reached")
    start = time.monotonic()
    with pytest.raises(LLMError, match="deadline") as info:
        run_complete(client)
    assert time.monotonic() - start < 30.0 and len(fake_llm.requests) == 1
    call = info.value.call
    assert call.error and "429" in call.error and call.model == "m" and call.temperature == 0.7
    assert call.cost_usd == 0.0


def test_deadline_bounds_slow_answers_and_retries(fake_llm: FakeLLM) -> None:
    client = warmed(fake_llm, deadline_s=2.0, timeout_s=0.6, max_retries=50)
    fake_llm.set_handler(lambda body: Reply.delay(10.0, "late"))
    start = time.monotonic()
    with pytest.raises(LLMError) as info:
        run_complete(client)
    elapsed = time.monotonic() - start
    # a few 0.6 s attempts, then the 2 s deadline: never 50 retries (30 s), never the 10 s answer
    assert 1.9 <= elapsed < 2.0 + SLACK_S, elapsed
    assert 1 <= len(fake_llm.requests) <= 4
    assert 1.2 <= info.value.call.latency_s <= elapsed  # the latency spans every attempt (0.6 s each), not the last


def test_retry_after_is_honoured_within_the_deadline(fake_llm: FakeLLM) -> None:
    client = warmed(fake_llm, deadline_s=60.0, max_retries=3)
    fake_llm.push(Reply.error(429, retry_after="0.5"), Reply.error(503), "ok")
    text, call = run_complete(client)
    assert text == "ok" and len(fake_llm.requests) == 3
    assert 0.5 <= call.latency_s < 0.5 + SLACK_S  # waited the server's 0.5 s, then a short backoff


# ---- benching, through the proposer --------------------------------------------------------------------------


def make_task(root: Path, settings: LLMSettings) -> Task:
    return llm_task(root, "", problem_text="Make x 3.", seed_program=PARENT, problem="p.md", llm=settings)


def context() -> ResearchContext:
    parent = Trial(id=1, status=TrialStatus.SUCCEEDED, name="seed", code=PARENT, score=-4.0)
    return ResearchContext(problem="Make x 3.", program_name="program.py", metric="score",
                           direction=Direction.MAXIMIZE, parent=parent)


def two_models(fake: FakeLLM, *, policy: str = "fixed", bench_s: float = 60.0, deadline_s: float = 5.0,
               bad_too: bool = False) -> LLMSettings:
    def handler(body: dict) -> str | Reply:
        if body["model"] == "bad" or bad_too:
            return Reply.error(500)
        return EDIT

    fake.set_handler(handler)
    models = [ModelSpec(name="fake/good", base_url=fake.base_url), ModelSpec(name="fake/bad", base_url=fake.base_url)]
    return LLMSettings(models=models, max_retries=0, bench_after_failures=2, bench_s=bench_s, deadline_s=deadline_s,
                       bandit={"policy": policy})


def propose_many(proposer: LLMProposer, n: int) -> list:
    async def go() -> list:
        try:
            return [await proposer.propose(context()) for _ in range(n)]
        finally:
            await proposer.aclose()

    return asyncio.run(go())


def test_benching_routes_around_a_failing_model(tmp_path: Path, fake_llm: FakeLLM) -> None:
    proposer = make_proposer(make_task(tmp_path, two_models(fake_llm)), None, seed=3)
    assert isinstance(proposer, LLMProposer)
    proposals = propose_many(proposer, 30)
    models = [body["model"] for body in fake_llm.requests]
    assert models.count("bad") == 2  # two failures in a row bench it; it never gets a third call
    failed = [p for p in proposals if p.error]
    assert len(failed) == 2 and all("fake/bad" in p.error and "500" in p.error for p in failed)
    assert all(p.model == "fake/good" and p.code == "x = 2.0\n" for p in proposals if not p.error)
    assert proposer.ensemble.bench.benchings == {"fake/bad": 1}
    assert {row["model"]: row["chosen"] for row in proposer.summary()} == {"fake/good": 28, "fake/bad": 2}
    # a proposal that yields no candidate becomes a failed trial carrying its arm: the ensemble learns reward 0 from
    # the record, like any trial (no record here, so nothing is learned yet)
    assert {row["model"]: row["pulls"] for row in proposer.summary()} == {"fake/good": 0, "fake/bad": 0}
    assert all(p.facts["arm"] == f"{p.model}@0.7" and p.facts["patch_type"] for p in proposals)


def test_all_benched_waits_for_the_first_to_return(tmp_path: Path, fake_llm: FakeLLM) -> None:
    settings = two_models(fake_llm, bench_s=0.4, deadline_s=5.0, bad_too=True)
    proposer = make_proposer(make_task(tmp_path, settings), None)
    start = time.monotonic()
    proposals = propose_many(proposer, 5)  # 4 failures bench both; the 5th waits ~0.4 s, then calls again
    assert time.monotonic() - start >= 0.35
    assert len(fake_llm.requests) == 5 and all(p.error for p in proposals)


def test_all_benched_beyond_the_wait_cap_fails_the_proposal_clearly(tmp_path: Path, fake_llm: FakeLLM) -> None:
    settings = two_models(fake_llm, bench_s=60.0, deadline_s=1.0, bad_too=True)
    proposals = propose_many(make_proposer(make_task(tmp_path, settings), None), 5)
    assert len(fake_llm.requests) == 4
    last = proposals[-1]
    assert last.error and "every model is benched" in last.error and last.model is None and not last.llm_calls


def test_ensemble_of_models_from_settings_and_names(tmp_path: Path, fake_llm: FakeLLM) -> None:
    settings = LLMSettings(models=[ModelSpec(name="fake/a", base_url=fake_llm.base_url, temperatures=[0.2, 1.0]),
                                   ModelSpec(name="fake/b", base_url=fake_llm.base_url),
                                   ModelSpec(name="fake/off", base_url=fake_llm.base_url, weight=0)])
    proposer = make_proposer(make_task(tmp_path, settings), None)
    assert isinstance(proposer, LLMProposer)
    assert list(proposer.ensemble.arms) == ["fake/a@0.2", "fake/a@1", "fake/b@0.7"]
    single = make_proposer(make_task(tmp_path, settings), "fake/b")
    assert isinstance(single, LLMProposer) and list(single.ensemble.arms) == ["fake/b@0.7"]
    fake_llm.set_handler(lambda body: EDIT)
    proposals = propose_many(proposer, 3)  # untried arms first, in config order
    assert [(c.model, c.temperature) for p in proposals for c in p.llm_calls] == [
        ("fake/a", 0.2), ("fake/a", 1.0), ("fake/b", 0.7)]
    assert [(r["model"], r["temperature"]) for r in fake_llm.requests] == [("a", 0.2), ("a", 1.0), ("b", 0.7)]


# ---- Anthropic -------------------------------------------------------------------------------------------------


def anthropic_client(fake: FakeAnthropic, **settings: object) -> ChatClient:
    spec = ModelSpec(name="anthropic/claude-haiku-4-5", base_url=fake.base_url, api_key_env="TEST_ANTHROPIC_KEY")
    return fast(client_for_spec(spec, LLMSettings(**settings)))


def test_anthropic_answer_usage_cost_and_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-SECRET-1")
    with FakeAnthropic() as fake:
        fake.push("hello from claude")
        text, call = run_complete(anthropic_client(fake, max_tokens=99), temperature=1.5)
    assert text == "hello from claude"
    body, headers = fake.requests[0], fake.headers[0]
    assert body["model"] == "claude-haiku-4-5" and body["system"] == "be brief" and body["max_tokens"] == 99
    assert body["messages"] == [{"role": "user", "content": "say hello world"}]
    assert body["temperature"] == 1.0 and call.temperature == 1.0  # clamped to the API's range, recorded as sent
    assert "sk-ant-SECRET-1" in (headers.get("x-api-key", ""), headers.get("authorization", "")[len("Bearer "):])
    assert (call.tokens_in, call.tokens_out) == (5, 3)
    assert call.cost_usd == pytest.approx((5 * 1.0 + 3 * 5.0) / 1e6)  # the default table's Haiku 4.5 price
    assert call.model == "anthropic/claude-haiku-4-5" and "sk-ant-SECRET-1" not in repr(call)


def test_anthropic_retries_429_and_529_and_not_400(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-SECRET-1")
    with FakeAnthropic() as fake:
        fake.push(Reply.error(429, retry_after="0.3"), Reply.error(529), "fine")
        text, call = run_complete(anthropic_client(fake, max_retries=3))
        assert text == "fine" and len(fake.requests) == 3 and call.latency_s >= 0.3
        fake.push(Reply.error(400), "unused")
        with pytest.raises(LLMError, match="400") as info:
            run_complete(anthropic_client(fake, max_retries=3))
        assert len(fake.requests) == 4 and info.value.call.model == "anthropic/claude-haiku-4-5"


def test_anthropic_model_that_refuses_temperature_is_asked_without(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-SECRET-1")
    refusal = '{"type": "error", "error": {"type": "invalid_request_error", "message": "temperature is deprecated"}}'
    with FakeAnthropic() as fake:
        fake.set_handler(lambda body: Reply.error(400, body=refusal) if "temperature" in body else "ok")
        client = anthropic_client(fake, max_retries=0)
        _, first = run_complete(client)
        _, second = run_complete(client)
    assert ["temperature" in body for body in fake.requests] == [True, False, False]
    assert first.temperature is None and second.temperature is None and first.error is None


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_refused_connection_is_unreachable_and_an_http_error_is_not(
    fake_llm: FakeLLM, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    name = "anthropic/claude-haiku-4-5" if provider == "anthropic" else "m"
    settings = LLMSettings(max_retries=0)
    down = fast(client_for_spec(ModelSpec(name=name, base_url=closed + "/v1"), settings))
    with pytest.raises(LLMError) as refused:
        run_complete(down)
    assert refused.value.unreachable, str(refused.value)
    if provider == "openai":
        fake_llm.push(Reply.error(500))
        up = fast(client_for_spec(ModelSpec(name=name, base_url=fake_llm.base_url), settings))
        with pytest.raises(LLMError) as answered:
            run_complete(up)
        assert "HTTP 500" in str(answered.value) and not answered.value.unreachable
