"""A client for any OpenAI-compatible chat endpoint: retries with backoff, token usage, a recorded `LLMCall`.

API keys stay inside the SDK client: they never reach an `LLMCall`, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from datetime import UTC, datetime
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletion

from evoforge.errors import EvoforgeError
from evoforge.models import LLMCall
from evoforge.task.config import LLMSettings

DUMMY_KEY = "not-needed"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
RETRYABLE_STATUS = {408, 409, 429}


class LLMError(EvoforgeError):
    """A language-model call failed for good; `.call` is the recorded `LLMCall` with `error` set."""

    def __init__(self, message: str, call: LLMCall) -> None:
        super().__init__(message)
        self.call = call


def is_loopback(base_url: str | None) -> bool:
    return bool(base_url) and (urlparse(base_url).hostname or "") in LOOPBACK_HOSTS


def render_messages(messages: list[dict[str, str]]) -> str:
    """The messages as one text, as the record stores a prompt."""
    return "\n\n".join(f"[{m.get('role', 'user')}]\n{m.get('content', '')}" for m in messages)


def parse_retry_after(headers: object, cap_s: float) -> float | None:
    """Seconds the server asks us to wait (`retry-after-ms`, `Retry-After` seconds or HTTP date), capped."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis:
        try:
            return min(max(float(millis) / 1000.0, 0.0), cap_s)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), cap_s)


class LLMClient:
    """Chat completions against one model; `complete()` retries 429/5xx/timeouts/connection errors."""

    backoff_base_s: float = 1.0  # first backoff; doubles each retry, with jitter
    backoff_cap_s: float = 30.0
    retry_after_cap_s: float = 60.0

    def __init__(
        self, *, model: str, base_url: str | None, api_key: str | None, settings: LLMSettings
    ) -> None:
        if not api_key:
            if not is_loopback(base_url):
                raise EvoforgeError(
                    f"no API key for model {model!r}: set the environment variable {settings.api_key_env} "
                    "(or name another variable in task.yaml llm.api_key_env)"
                )
            api_key = DUMMY_KEY
        self.model = model
        self.base_url = base_url
        self.settings = settings
        self._secret = api_key
        self._rng = random.Random()

    async def _create(self, messages: list[dict[str, str]]) -> ChatCompletion:
        """One request through a fresh SDK client, closed after it.

        No connection outlives its event loop, so one LLMClient serves any number of `asyncio.run` calls
        (the ~25 ms client setup is noise next to a model call).
        """
        client = openai.AsyncOpenAI(
            api_key=self._secret, base_url=self.base_url, timeout=self.settings.timeout_s, max_retries=0
        )
        try:
            return await client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens,
            )
        finally:
            await client.close()

    async def complete(self, messages: list[dict[str, str]], *, role: str) -> tuple[str, LLMCall]:
        """Send `messages`; the answer text and its `LLMCall`, or `LLMError` after the last retry."""
        prompt = render_messages(messages)
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                response = await self._create(messages)
                break
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as LLMError
                wait = self._retry_wait(exc, attempt)
                if wait is None or attempt >= self.settings.max_retries:
                    raise self._failure(exc, attempt, role, prompt, time.monotonic() - start) from None
                await asyncio.sleep(wait)
                attempt += 1
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        call = LLMCall(
            role=role,
            model=self.model,
            prompt=prompt,
            response=text,
            tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
            tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=time.monotonic() - start,
        )
        return text, call

    def _retry_wait(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after `exc`, or None when it must not be retried."""
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code not in RETRYABLE_STATUS and exc.status_code < 500:
                return None
            hinted = parse_retry_after(exc.response.headers, self.retry_after_cap_s)
            if hinted is not None:
                return hinted
        elif not isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
            return None
        backoff = min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)
        return backoff * (0.5 + 0.5 * self._rng.random())

    def _failure(self, exc: Exception, attempt: int, role: str, prompt: str, latency: float) -> LLMError:
        if isinstance(exc, openai.APIStatusError):
            what = f"HTTP {exc.status_code}: {exc.message}"
        else:
            what = f"{type(exc).__name__}: {exc}"
        what = self.redact(what)
        where = f" at {self.base_url}" if self.base_url else ""
        message = f"LLM call to model {self.model!r}{where} failed after {attempt + 1} attempt(s): {what}"
        call = LLMCall(
            role=role, model=self.model, prompt=prompt, response="", latency_s=latency, error=message
        )
        return LLMError(message, call)

    def redact(self, text: str) -> str:
        """`text` with the API key blotted out (server error bodies sometimes echo it)."""
        if self._secret and self._secret != DUMMY_KEY and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return text

    async def aclose(self) -> None:
        """Nothing to release (each call closes its own connection); kept so callers need not know."""
        return None

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, base_url={self.base_url!r})"


def client_from_settings(settings: LLMSettings, model: str | None = None) -> LLMClient:
    """A client for `model` (else settings.model, else $EVOFORGE_MODEL) at the base URL of settings or env."""
    chosen = model or settings.model or os.environ.get("EVOFORGE_MODEL")
    if not chosen:
        raise EvoforgeError(
            "no language model named: pass --llm MODEL, set llm.model in task.yaml or the environment "
            "variable EVOFORGE_MODEL (or use --llm offline)"
        )
    base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get(settings.api_key_env) or None
    return LLMClient(model=chosen, base_url=base_url, api_key=api_key, settings=settings)
