"""The chat-client base every provider implements: one `complete()` with retries, backoff with jitter,
`Retry-After`, a per-call deadline over all attempts, pricing, and an `LLMCall` for every success or failure.

API keys stay inside the provider SDK: they never reach an `LLMCall`, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import random
import ssl
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from evoforge.config import Price, split_name
from evoforge.errors import EvoforgeError
from evoforge.models import LLMCall

if TYPE_CHECKING:
    from evoforge.config import LLMSettings

DUMMY_KEY = "not-needed"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
RETRYABLE_STATUS = {408, 409, 429}


class LLMError(EvoforgeError):
    """A language-model call failed for good; `.call` is the recorded `LLMCall` with `error` set."""

    def __init__(self, message: str, call: LLMCall, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.call = call
        self.unreachable = unreachable  # the endpoint could not be reached at all (see `Failure.unreachable`)


@dataclass(frozen=True)
class Reply:
    """What one successful request returned."""

    text: str
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class Failure:
    """How a failed request is treated: retried or not, the server's wait hint, and a one-line description."""

    retryable: bool
    wait_hint: float | None
    what: str
    unreachable: bool = False  # no connection to the endpoint (refused, reset, unknown host, connect timeout)


def unreachable(exc: BaseException, connection_error: type[BaseException], timeout_error: type[BaseException]) -> bool:
    """Whether an SDK exception means the endpoint could not be reached, as opposed to an answer (an HTTP error)
    or a request that was slow to be answered. `connection_error`/`timeout_error`: the SDK's classes (its timeout
    class is a kind of connection error: only a timeout while connecting counts, which the SDK's HTTP library
    raises as its `ConnectTimeout`)."""
    if isinstance(exc, timeout_error):
        return type(exc.__cause__).__name__ == "ConnectTimeout"
    return isinstance(exc, connection_error)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for the process (system CAs; SSL_CERT_FILE/SSL_CERT_DIR are honoured). Each
    request opens a fresh SDK client; building the context anew for each cost ~20 ms of reading CA files."""
    return ssl.create_default_context()


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


class ChatClient(ABC):
    """Chat completions against one model. `model` is the recorded name ("provider/model" or a bare id);
    `api_model` is the id sent to the endpoint (the part after the provider)."""

    provider: str = "openai"
    key_env_default: str = "OPENAI_API_KEY"
    backoff_base_s: float = 1.0  # first backoff; doubles each retry, with jitter
    backoff_cap_s: float = 30.0
    retry_after_cap_s: float = 60.0

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        settings: LLMSettings,
        api_model: str | None = None,
        price: Price | None = None,
        max_tokens: int | None = None,
        key_env: str | None = None,
    ) -> None:
        if not api_key:
            if not is_loopback(base_url):
                variable = key_env or self.key_env_default
                raise EvoforgeError(
                    f"no API key for model {model!r}: set the environment variable {variable} "
                    "(or name another variable in task.yaml llm.api_key_env / llm.models[].api_key_env)"
                )
            api_key = DUMMY_KEY
        self.model = model
        self.api_model = api_model or split_name(model)[1]
        self.base_url = base_url
        self.settings = settings
        self.price = price or Price(input=0.0, output=0.0)
        self.max_tokens = max_tokens or settings.max_tokens
        self._secret = api_key
        self._rng = random.Random()

    @abstractmethod
    async def _request(self, messages: list[dict[str, str]], temperature: float | None, timeout_s: float) -> Reply:
        """One request, no retries; raises the SDK's exception on failure."""

    @abstractmethod
    def _classify(self, exc: BaseException) -> Failure:
        """Whether `exc` is worth a retry, the server's wait hint, and what to report."""

    def effective_temperature(self, temperature: float | None) -> float | None:
        """The temperature sent for a requested one (None: the settings'; a provider may clamp or omit it)."""
        return self.settings.temperature if temperature is None else temperature

    async def complete(
        self, messages: list[dict[str, str]], *, role: str, temperature: float | None = None
    ) -> tuple[str, LLMCall]:
        """Send `messages`; the answer and its `LLMCall`, or `LLMError` once retries or the deadline run out."""
        prompt = render_messages(messages)
        temp = self.effective_temperature(temperature)
        start = time.monotonic()
        deadline = start + self.settings.deadline_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            scope = asyncio.timeout(remaining)  # the request runs in this task (no task of its own)
            try:
                async with scope:
                    reply = await self._request(messages, temp, min(self.settings.timeout_s, remaining))
                break
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as LLMError
                # the deadline passed, or the request failed (an HTTP library's own timeout is a TimeoutError too)
                failure = self._timeout_failure() if scope.expired() else self._classify(exc)
                wait = self._wait(failure, attempt)
                stop = self._stop_reason(failure, attempt, deadline, wait)
                if stop is not None:
                    raise self._failure(failure, stop, attempt, role, prompt, temp, start) from None
                await asyncio.sleep(wait)
                attempt += 1
        call = LLMCall(
            role=role, model=self.model, prompt=prompt, response=reply.text, tokens_in=reply.tokens_in,
            tokens_out=reply.tokens_out, latency_s=time.monotonic() - start,
            cost_usd=self.price.cost(reply.tokens_in, reply.tokens_out),
            temperature=self.effective_temperature(temperature),  # as sent (a provider may have dropped it)
            retries=attempt,
        )
        return reply.text, call

    def _timeout_failure(self) -> Failure:
        return Failure(retryable=False, wait_hint=None, what=f"no answer within the {self.settings.deadline_s:g} s "
                       "deadline (llm.deadline_s)")

    def _wait(self, failure: Failure, attempt: int) -> float:
        if failure.wait_hint is not None:
            return failure.wait_hint
        backoff = min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)
        return backoff * (0.5 + 0.5 * self._rng.random())

    def _stop_reason(self, failure: Failure, attempt: int, deadline: float, wait: float) -> str | None:
        """Why no retry follows `failure` ("" when the failure itself says it), or None to retry."""
        if not failure.retryable or attempt >= self.settings.max_retries:
            return ""
        if time.monotonic() + wait >= deadline:
            return f"; the next retry (in {wait:.3g} s) would pass the {self.settings.deadline_s:g} s deadline"
        return None

    def _failure(
        self, failure: Failure, stop: str, attempt: int, role: str, prompt: str, temperature: float | None, start: float
    ) -> LLMError:
        where = f" at {self.base_url}" if self.base_url else ""
        what = self.redact(failure.what)
        message = f"LLM call to model {self.model!r}{where} failed after {attempt + 1} attempt(s): {what}{stop}"
        call = LLMCall(
            role=role, model=self.model, prompt=prompt, response="", latency_s=time.monotonic() - start,
            error=message, temperature=temperature, retries=attempt,
        )
        return LLMError(message, call, unreachable=failure.unreachable)

    def redact(self, text: str) -> str:
        """`text` with the API key blotted out (server error bodies sometimes echo it)."""
        if self._secret and self._secret != DUMMY_KEY and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return text

    async def aclose(self) -> None:
        """Nothing to release here; a subclass that keeps connections open closes them."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"
