"""The client for Anthropic's native Messages API, through the `anthropic` SDK (extra `evoforge[anthropic]`),
with the same `complete()` as every other provider: retries, deadline, pricing and a recorded `LLMCall`."""

from __future__ import annotations

from typing import Any

from evoforge.errors import EvoforgeError
from evoforge.llm._base import (
    RETRYABLE_STATUS,
    ChatClient,
    Failure,
    Reply,
    parse_retry_after,
    tls_context,
    unreachable,
)

ANTHROPIC_TEMPERATURE_MAX = 1.0  # the Messages API accepts temperatures in 0..1


def _sdk() -> Any:
    try:
        import anthropic
    except ImportError:
        raise EvoforgeError(
            "an 'anthropic/...' model needs the Anthropic SDK: pip install 'evoforge[anthropic]'"
        ) from None
    return anthropic


def split_system(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """The Messages API takes system text apart; consecutive turns of one role are merged, as it requires."""
    system = "\n\n".join(m.get("content", "") for m in messages if m.get("role") == "system")
    turns: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role", "user")
        if role == "system":
            continue
        role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": turns[-1]["content"] + "\n\n" + message.get("content", "")}
        else:
            turns.append({"role": role, "content": message.get("content", "")})
    return system, turns


class AnthropicClient(ChatClient):
    """Messages against one Claude model; temperatures above 1 are clamped to 1 (and recorded as sent).

    The temperature travels as a raw body field (recent SDKs dropped the argument); a model that refuses it
    (HTTP 400 naming "temperature") is asked again at once without it, and from then on never gets one.
    """

    provider = "anthropic"
    key_env_default = "ANTHROPIC_API_KEY"

    def __init__(self, **kwargs: Any) -> None:
        self._anthropic = _sdk()
        self.sends_temperature = True
        super().__init__(**kwargs)

    def effective_temperature(self, temperature: float | None) -> float | None:
        wanted = super().effective_temperature(temperature)
        if not self.sends_temperature or wanted is None:
            return None
        return min(wanted, ANTHROPIC_TEMPERATURE_MAX)

    async def _request(self, messages: list[dict[str, str]], temperature: float | None, timeout_s: float) -> Reply:
        try:
            return await self._send(messages, temperature if self.sends_temperature else None, timeout_s)
        except self._anthropic.BadRequestError as exc:
            if not self.sends_temperature or "temperature" not in str(exc.message).lower():
                raise
            self.sends_temperature = False
            return await self._send(messages, None, timeout_s)

    async def _send(self, messages: list[dict[str, str]], temperature: float | None, timeout_s: float) -> Reply:
        system, turns = split_system(messages)
        client = self._anthropic.AsyncAnthropic(
            api_key=self._secret, base_url=self.base_url, timeout=timeout_s, max_retries=0,
            http_client=self._anthropic.DefaultAsyncHttpxClient(verify=tls_context()),
        )
        extra: dict[str, Any] = {"system": system} if system else {}
        if temperature is not None:
            extra["extra_body"] = {"temperature": temperature}
        try:
            response = await client.messages.create(
                model=self.api_model, messages=turns, max_tokens=self.max_tokens, **extra
            )
        finally:
            await client.close()
        text = "".join(getattr(block, "text", "") for block in response.content if block.type == "text")
        usage = response.usage
        cached = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        cached += int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        return Reply(
            text=text,
            tokens_in=int(usage.input_tokens or 0) + cached,
            tokens_out=int(usage.output_tokens or 0),
        )

    def _classify(self, exc: BaseException) -> Failure:
        sdk = self._anthropic
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            retryable = status in RETRYABLE_STATUS or status >= 500  # 529 "overloaded" included
            hint = parse_retry_after(exc.response.headers, self.retry_after_cap_s) if retryable else None
            return Failure(retryable, hint, f"HTTP {status}: {exc.message}")
        retryable = isinstance(exc, sdk.APIConnectionError)  # includes APITimeoutError
        down = unreachable(exc, sdk.APIConnectionError, sdk.APITimeoutError)
        return Failure(retryable, None, f"{type(exc).__name__}: {exc}", unreachable=down)
