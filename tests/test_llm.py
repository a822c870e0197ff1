"""The LLM client against the loopback fake server: answers, usage, retries, Retry-After, key hygiene."""

from __future__ import annotations

import asyncio
import email.utils
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from fake_llm import FakeLLM, Reply

from evoforge.config import LLMSettings
from evoforge.errors import EvoforgeError
from evoforge.llm import LLMClient, LLMError, client_from_settings
from evoforge.llm.client import parse_completion, parse_retry_after
from evoforge.models import LLMCall

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello world"}]


def fast_client(fake: FakeLLM, **settings: object) -> LLMClient:
    client = LLMClient(
        model="fake-model",
        base_url=fake.base_url,
        api_key="sk-test-SECRET-123",
        settings=LLMSettings(**settings),
    )
    client.backoff_base_s = 0.01  # keep retry tests fast; the backoff logic itself is unchanged
    return client


def complete(client: LLMClient, role: str = "researcher") -> tuple[str, LLMCall]:
    async def go() -> tuple[str, LLMCall]:
        try:
            return await client.complete(MESSAGES, role=role)
        finally:
            await client.aclose()

    return asyncio.run(go())


def fail(client: LLMClient) -> LLMError:
    with pytest.raises(LLMError) as info:
        complete(client)
    return info.value


def test_answer_usage_and_request(fake_llm: FakeLLM) -> None:
    fake_llm.push("hello there world")
    text, call = complete(fast_client(fake_llm, temperature=0.3, max_tokens=77), role="analyzer")
    assert text == "hello there world"
    assert call.role == "analyzer" and call.model == "fake-model" and call.error is None
    assert call.response == text
    assert call.tokens_in == 5 and call.tokens_out == 3  # the fake counts words of the prompt and answer
    assert "[system]\nbe brief" in call.prompt and "[user]\nsay hello world" in call.prompt
    body = fake_llm.requests[0]
    assert body["model"] == "fake-model" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.3 and body["max_tokens"] == 77


def test_missing_usage_counts_zero(fake_llm: FakeLLM) -> None:
    fake_llm.push(Reply.text("no usage here", usage=False))
    _, call = complete(fast_client(fake_llm))
    assert (call.tokens_in, call.tokens_out) == (0, 0)


def test_retry_after_is_honoured(fake_llm: FakeLLM) -> None:
    fake_llm.push(Reply.error(429, retry_after="1"), "finally")
    text, call = complete(fast_client(fake_llm, max_retries=2))
    assert text == "finally"
    assert len(fake_llm.requests) == 2
    assert call.latency_s >= 0.95  # waited the server's second, not the 0.01 s backoff


def test_server_errors_exhaust_retries(fake_llm: FakeLLM) -> None:
    fake_llm.push(*[Reply.error(500) for _ in range(3)], "never reached")
    error = fail(fast_client(fake_llm, max_retries=2))
    assert len(fake_llm.requests) == 3
    assert fake_llm.pending == 1
    assert "500" in str(error) and "3 attempt" in str(error)
    assert error.call.error == str(error) and error.call.role == "researcher"
    assert error.call.response == "" and "say hello world" in error.call.prompt


def test_client_error_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.push(Reply.error(400, body='{"error": {"message": "bad model"}}'), "unused")
    error = fail(fast_client(fake_llm, max_retries=3))
    assert len(fake_llm.requests) == 1
    assert "400" in str(error) and "bad model" in str(error)


def test_timeout_is_retried(fake_llm: FakeLLM) -> None:
    # the first answer would come long after the timeout (the fake's close wakes it); the retry has the whole
    # timeout to answer, which a loaded machine needs (0.3 s was too short for it under a full suite)
    fake_llm.push(Reply.delay(120.0, "too late"), "in time")
    text, _ = complete(fast_client(fake_llm, timeout_s=3.0, max_retries=1))
    assert text == "in time" and len(fake_llm.requests) == 2


def test_connection_error_fails_after_retries() -> None:
    with FakeLLM() as fake:
        url = fake.base_url  # a port that was just closed: connections are refused
    client = LLMClient(model="m", base_url=url, api_key=None, settings=LLMSettings(max_retries=1))
    client.backoff_base_s = 0.01
    error = fail(client)
    assert "2 attempt" in str(error) and "Connection error (ClientConnectorError" in str(error)
    assert error.unreachable  # the run halts (resumable) rather than burning its trials on it


def test_key_sent_but_never_recorded(fake_llm: FakeLLM) -> None:
    secret = "sk-test-SECRET-123"
    fake_llm.push(Reply.error(401, body=f'{{"error": {{"message": "key {secret} is invalid"}}}}'))
    error = fail(fast_client(fake_llm))
    fake_llm.push("fine")
    _, call = complete(fast_client(fake_llm))
    assert [h["authorization"] for h in fake_llm.headers] == [f"Bearer {secret}"] * 2
    for text in (
        call.prompt,
        call.response,
        str(error),
        error.call.prompt,
        error.call.error or "",
        repr(call),
    ):
        assert secret not in text


def test_loopback_works_without_key_remote_does_not(
    fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("EVOFORGE_MODEL", raising=False)
    fake_llm.push("ok")
    text, _ = complete(client_from_settings(LLMSettings(base_url=fake_llm.base_url), "m"))
    assert text == "ok" and fake_llm.headers[0]["authorization"] == "Bearer not-needed"
    with pytest.raises(EvoforgeError, match="OPENAI_API_KEY"):
        client_from_settings(LLMSettings(base_url="https://api.example.com/v1"), "m")
    with pytest.raises(EvoforgeError, match="EVOFORGE_MODEL"):
        client_from_settings(LLMSettings(base_url=fake_llm.base_url))


def test_settings_and_environment_resolution(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOFORGE_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    settings = LLMSettings(api_key_env="MY_KEY")
    assert client_from_settings(settings).model == "env-model"
    assert client_from_settings(LLMSettings(model="task-model")).model == "task-model"
    fake_llm.push("ok")
    client = client_from_settings(settings, "arg-model")
    assert client.model == "arg-model"
    complete(client)
    assert fake_llm.requests[0]["model"] == "arg-model"
    assert fake_llm.headers[0]["authorization"] == "Bearer sk-from-env"


def test_one_client_serves_several_event_loops_and_concurrent_calls(fake_llm: FakeLLM) -> None:
    fake_llm.set_handler(lambda body: "echo " + body["messages"][-1]["content"])
    client = fast_client(fake_llm)

    async def many(n: int) -> list[str]:
        results = await asyncio.gather(
            *[client.complete([{"role": "user", "content": str(i)}], role="r") for i in range(n)]
        )
        return [text for text, _ in results]

    assert asyncio.run(many(1)) == ["echo 0"]
    assert asyncio.run(many(6)) == [f"echo {i}" for i in range(6)]  # a fresh loop: no "Event loop is closed"
    complete(client)
    assert len(fake_llm.requests) == 8


def test_one_http_session_per_event_loop(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the HTTP session costs more than a request to a local server: one per loop, not one per request;
    within a loop the requests share one kept-alive connection (a new one per request cost more CPU than the
    request), and `aclose` closes it."""
    built: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def counting(*args: object, **kwargs: object) -> aiohttp.ClientSession:
        built.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(aiohttp, "ClientSession", counting)
    client = fast_client(fake_llm)

    async def three() -> None:
        for i in range(3):
            await client.complete([{"role": "user", "content": str(i)}], role="r")
        await client.aclose()

    asyncio.run(three())
    assert len(built) == 1 and len(fake_llm.requests) == 3 and built[0].closed
    asyncio.run(three())  # a new loop gets its own session
    assert len(built) == 2 and built[1].closed
    assert not any(headers.get("connection") == "close" for headers in fake_llm.headers)
    first, second = fake_llm.connections[:3], fake_llm.connections[3:]
    assert len(set(first)) == 1 and len(set(second)) == 1 and set(first) != set(second)


def test_a_request_goes_without_the_openai_sdk(fake_llm: FakeLLM) -> None:
    """The client posts the chat completion itself: the OpenAI SDK's request and answer machinery cost more CPU per
    call than a local server takes to answer (three calls a trial), and its import slowed every start. Nor is the
    answer parsed by h11 (pure Python, under httpx): aiohttp's parser is C (llhttp)."""
    fake_llm.push("hello")
    script = textwrap.dedent(f"""
        import asyncio, sys
        from evoforge.config import LLMSettings
        from evoforge.llm import LLMClient
        async def go():
            client = LLMClient(model="m", base_url={fake_llm.base_url!r}, api_key=None, settings=LLMSettings())
            try:
                return (await client.complete([{{"role": "user", "content": "hi"}}], role="r"))[0]
            finally:
                await client.aclose()
        print(asyncio.run(go()), "openai" in sys.modules, "h11" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.split() == ["hello", "False", "False"], done.stderr  # nor h11: aiohttp parses HTTP in C


def test_a_request_runs_in_the_callers_task(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-call deadline bounds the request where it runs: no task of its own per request (its creation, steps
    and wake-ups cost event-loop CPU, three calls a trial)."""
    fake_llm.push("hi")
    client = fast_client(fake_llm)
    tasks: list[object] = []
    real = client._request

    async def spy(*args: object) -> object:
        tasks.append(asyncio.current_task())
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "_request", spy)

    async def go() -> object:
        try:
            await client.complete(MESSAGES, role="r")
            return asyncio.current_task()
        finally:
            await client.aclose()

    caller = asyncio.run(go())
    assert tasks == [caller]


def test_answers_that_are_no_chat_completion(fake_llm: FakeLLM) -> None:
    fake_llm.push(Reply(status=200, body='{"id": "x", "choices": [{"message": {"content": "NA'),
                  Reply(status=200, body='{"error": "overloaded"}'),
                  Reply(status=200, body='{"choices": [{"message": {"content": null}}]}'))
    assert "not JSON" in str(fail(fast_client(fake_llm)))  # a truncated answer: one clear line, not retried
    assert "no 'choices'" in str(fail(fast_client(fake_llm)))
    text, call = complete(fast_client(fake_llm))
    assert text == "" and call.tokens_in == 0 and call.tokens_out == 0 and call.error is None
    assert len(fake_llm.requests) == 3


def test_parse_completion() -> None:
    reply = parse_completion('{"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 7, '
                             '"completion_tokens": 2}}')
    assert (reply.text, reply.tokens_in, reply.tokens_out) == ("hi", 7, 2)
    assert parse_completion('{"choices": [], "usage": null}').text == ""
    with pytest.raises(ValueError, match="not a chat completion"):
        parse_completion("[1, 2]")


def test_parse_retry_after() -> None:
    assert parse_retry_after({"retry-after": "2"}, 60) == 2.0
    assert parse_retry_after({"retry-after": "600"}, 60) == 60.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}, 60) == 0.25
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 20 <= (parse_retry_after({"retry-after": soon}, 60) or 0) <= 31
    assert parse_retry_after({"retry-after": "soon-ish"}, 60) is None
    assert parse_retry_after({}, 60) is None


def test_fake_server_reports_a_broken_handler(fake_llm: FakeLLM) -> None:
    fake_llm.set_handler(lambda body: body["missing"])
    error = fail(fast_client(fake_llm))
    assert "500" in str(error) and "KeyError" in str(error)
    assert isinstance(fake_llm.handler_errors[0], KeyError)
