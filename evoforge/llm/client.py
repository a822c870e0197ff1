"""The client for any OpenAI-compatible chat endpoint, and the factories that build a provider's client from
task settings: `client_for_spec` (one `ModelSpec`) and `client_from_settings` (a model name or the task's model)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from evoforge.config import ModelSpec, choose_models
from evoforge.config.llm import ANTHROPIC, KNOWN_ENDPOINTS, LOCAL, OPENAI
from evoforge.errors import EvoforgeError
from evoforge.llm._base import (
    DUMMY_KEY,
    LOOPBACK_HOSTS,
    RETRYABLE_STATUS,
    ChatClient,
    Failure,
    LLMError,
    Reply,
    is_loopback,
    parse_retry_after,
    render_messages,
    tls_context,
)
from evoforge.llm._http import Session, open_session
from evoforge.llm.pricing import price_for

if TYPE_CHECKING:
    from evoforge.config import LLMSettings

__all__ = [
    "DUMMY_KEY", "LOOPBACK_HOSTS", "ChatClient", "LLMClient", "LLMError", "client_for_spec", "client_from_settings",
    "is_loopback", "parse_retry_after", "render_messages",
]


OPENAI_URL = "https://api.openai.com/v1"  # the endpoint of a client given none
ERROR_BODY_CHARS = 1000  # of an error answer's body, in the failure's description


class HTTPStatusFailure(Exception):
    """The endpoint answered with an error status (its headers kept for `Retry-After`)."""

    def __init__(self, status: int, headers: Mapping[str, str], body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:ERROR_BODY_CHARS]}")
        self.status, self.headers = status, headers


class LLMClient(ChatClient):
    """Chat completions against one model behind an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, ...)."""

    _http: Session | None = None

    async def _session(self) -> Session:
        """The HTTP session of the running event loop, made on its first request and kept for the next ones.

        Its connections are kept alive between requests (a new TCP — or TLS — connection per request cost more CPU
        than the request itself). A session belongs to its event loop: a request from another loop (a later
        `asyncio.run`) gets a new one, so one LLMClient serves any number of loops; a session is closed when its loop
        ends (or by `aclose`). The TLS context is built once per process and shared; proxy settings come from the
        environment (HTTPS_PROXY, NO_PROXY...), as with the OpenAI SDK. aiohttp parses answers in C (llhttp) and
        sends a request's head and body in one write (see `_http`)."""
        http = self._http
        if http is None or http.loop is not asyncio.get_running_loop():
            http = self._http = await open_session(
                tls_context(),
                {"authorization": f"Bearer {self._secret}", "content-type": "application/json",
                 "accept": "application/json"},
            )
        return http

    async def _request(self, messages: list[dict[str, str]], temperature: float | None, timeout_s: float) -> Reply:
        """One POST to the endpoint's /chat/completions through the loop's session (see `_session`); `timeout_s`
        bounds the connecting and each wait for the answer's bytes (as the OpenAI SDK's timeout does). The answer's
        JSON is read here. (The OpenAI SDK's request and answer machinery cost more CPU than a local server takes to
        answer.)"""
        body = {"model": self.api_model, "messages": messages, "temperature": temperature,
                "max_tokens": self.max_tokens}
        status, headers, text = await (await self._session()).post(
            completions_url(self.base_url), json.dumps(body).encode(), request_timeout(timeout_s))
        if status >= 400:
            raise HTTPStatusFailure(status, headers, text.strip())
        return parse_completion(text)

    async def aclose(self) -> None:
        """Close the HTTP session when it belongs to the running loop; one of a loop that has ended was closed with
        it."""
        http, self._http = self._http, None
        if http is not None and http.loop is asyncio.get_running_loop():
            await http.aclose()

    def _classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, HTTPStatusFailure):
            retryable = exc.status in RETRYABLE_STATUS or exc.status >= 500
            hint = parse_retry_after(exc.headers, self.retry_after_cap_s) if retryable else None
            return Failure(retryable, hint, str(exc))
        what = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, aiohttp.ServerTimeoutError):  # connecting, or waiting for the answer, took `timeout_s`
            down = isinstance(exc, aiohttp.ConnectionTimeoutError)  # only a timeout while connecting: unreachable
            return Failure(True, None, f"Request timed out ({what})", unreachable=down)
        # no connection (refused, reset, unknown host, a proxy's or TLS's refusal), a dropped one, a broken answer;
        # not: a bad URL, a redirect loop
        down = isinstance(exc, aiohttp.ClientError) and not isinstance(exc, (aiohttp.InvalidURL,
                                                                            aiohttp.TooManyRedirects))
        return Failure(down, None, f"Connection error ({what})" if down else what, unreachable=down)


@functools.lru_cache(maxsize=64)
def completions_url(base_url: str | None) -> URL:
    """The /chat/completions URL of an endpoint, parsed once."""
    return URL(f"{(base_url or OPENAI_URL).rstrip('/')}/chat/completions")


@functools.lru_cache(maxsize=64)
def request_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """`seconds` to connect (TLS included) and for each wait for the answer's next bytes; no bound on the whole
    request (the call's `llm.deadline_s` bounds it), none on waiting for a free connection of the pool."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=seconds, sock_read=seconds)


def parse_completion(raw: str) -> Reply:
    """The text and token counts of a chat completion's JSON; ValueError naming what is missing when it is none."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the endpoint's answer is not JSON ({exc}): {raw[:200]!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        raise ValueError(f"the endpoint's answer is not a chat completion (no 'choices'): {raw[:200]!r}")
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Reply(
        text=text if isinstance(text, str) else "",
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
    )


def _endpoint(spec: ModelSpec, settings: LLMSettings) -> str | None:
    if spec.base_url:
        return spec.base_url
    provider = spec.provider
    if provider == OPENAI:
        return settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if provider == ANTHROPIC:
        return os.environ.get("ANTHROPIC_BASE_URL") or None
    if provider in KNOWN_ENDPOINTS:
        return KNOWN_ENDPOINTS[provider]
    if settings.base_url:
        return settings.base_url
    raise EvoforgeError(
        f"model {spec.name!r}: no endpoint known for provider {provider!r}; set base_url on it in task.yaml "
        "llm.models (or llm.base_url)"
    )


def _key_env(spec: ModelSpec, settings: LLMSettings) -> str:
    if spec.api_key_env:
        return spec.api_key_env
    if spec.provider == OPENAI:
        return settings.api_key_env
    return f"{spec.provider.upper().replace('-', '_')}_API_KEY"


def client_for_spec(spec: ModelSpec, settings: LLMSettings, *, base_url: str | None = None) -> ChatClient:
    """The client for one configured model: Anthropic's native API for "anthropic/...", else OpenAI-compatible.

    `base_url` overrides the endpoint (the local model server passes its own). Raises EvoforgeError when the
    endpoint or the key is missing, naming the field or variable to set."""
    url = base_url or (None if spec.provider == LOCAL else _endpoint(spec, settings))
    key_env = _key_env(spec, settings)
    kwargs = dict(
        model=spec.name, base_url=url, api_key=os.environ.get(key_env) or None, settings=settings,
        api_model=spec.api_model, price=price_for(spec, settings.prices), max_tokens=spec.max_tokens,
        key_env=key_env,
    )
    if spec.provider == ANTHROPIC:
        from evoforge.llm.anthropic_client import AnthropicClient

        return AnthropicClient(**kwargs)  # type: ignore[arg-type]
    return LLMClient(**kwargs)  # type: ignore[arg-type]


def client_from_settings(settings: LLMSettings, model: str | None = None) -> ChatClient:
    """The client of the single-model roles for `model` (an `--llm` value) and `settings`, as `choose_models` picks
    it; EvoforgeError when it picks no model."""
    chosen = choose_models(settings, model).single
    if chosen is None:
        raise EvoforgeError(
            "no language model named: pass --llm MODEL, set llm.model in task.yaml or the environment "
            "variable EVOFORGE_MODEL (or use --llm offline)"
        )
    return client_for_spec(chosen, settings)
