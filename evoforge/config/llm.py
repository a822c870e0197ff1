"""The `llm:` section of task.yaml: how a model is named and configured (`ModelSpec`: "provider/model", endpoint,
key variable, prices, temperatures), the ensemble's bandit, and the rule that turns a "provider/model" name into a
provider and an API model id. Keys are read from the environment, never from files."""

from __future__ import annotations

from pydantic import Field, field_validator

from evoforge.config._base import Strict

OPENAI = "openai"
ANTHROPIC = "anthropic"
LOCAL = "local"

# OpenAI-compatible providers whose endpoint is known, so "provider/model" needs no base_url.
KNOWN_ENDPOINTS: dict[str, str] = {
    "openrouter": "https://openrouter.ai/api/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "together": "https://api.together.xyz/v1",
    "mistral": "https://api.mistral.ai/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai/",
}


class Price(Strict):
    """US dollars per million tokens."""

    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1_000_000


def split_name(name: str) -> tuple[str, str]:
    """("provider", "api model id") of a model name: "anthropic/claude-x" → ("anthropic", "claude-x");
    "openrouter/meta-llama/llama-3" → ("openrouter", "meta-llama/llama-3"); a bare "gpt-4o" → ("openai", "gpt-4o")."""
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        return OPENAI, name
    return provider.lower(), model


class ModelSpec(Strict):
    """One model of the ensemble, as written in task.yaml under `llm.models`."""

    name: str = Field(min_length=1, description='"provider/model" (a bare name means an OpenAI-compatible model)')
    base_url: str | None = Field(default=None, description="endpoint; default: the provider's, or llm.base_url")
    api_key_env: str | None = Field(
        default=None, description="variable holding the key; default PROVIDER_API_KEY (openai: llm.api_key_env)"
    )
    price_in: float | None = Field(default=None, ge=0.0, description="USD per million input tokens (overrides table)")
    price_out: float | None = Field(default=None, ge=0.0, description="USD per million output tokens")
    temperatures: list[float] = Field(default_factory=list, description="one bandit arm each; [] → llm.temperature")
    max_tokens: int | None = Field(default=None, gt=0, description="answer cap; default llm.max_tokens")
    weight: float = Field(
        default=1.0, ge=0.0, description="share under the 'fixed' policy and first-round order; 0 leaves it out"
    )

    @field_validator("temperatures")
    @classmethod
    def _temperatures_in_range(cls, values: list[float]) -> list[float]:
        for value in values:
            if not 0.0 <= value <= 2.0:
                raise ValueError(f"temperature {value} is outside 0..2")
        return sorted(set(values))

    @property
    def provider(self) -> str:
        return split_name(self.name)[0]

    @property
    def api_model(self) -> str:
        return split_name(self.name)[1]

    def price(self) -> Price | None:
        """The price given on the spec itself, when both halves are."""
        if self.price_in is None or self.price_out is None:
            return None
        return Price(input=self.price_in, output=self.price_out)


class BanditSettings(Strict):
    """How the ensemble picks the (model, temperature) arm of the next proposal (see evoforge/llm/bandit.py)."""

    policy: str = Field(default="thompson", pattern="^(ucb1|thompson|fixed)$")
    exploration: float = Field(default=1.0, ge=0.0, description="UCB1 exploration constant")
    cost_aware: bool = Field(default=False, description="divide each arm's reward by its relative mean cost per call")


class LLMSettings(Strict):
    """Where the researcher's language model lives. Keys are read from the environment, never from files."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=4096, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    deadline_s: float = Field(default=600.0, gt=0, description="per call, all retries included")
    models: list[ModelSpec] = Field(default_factory=list, description="the ensemble; each 'provider/model'")
    bandit: BanditSettings = BanditSettings()
    prices: dict[str, Price] = Field(default_factory=dict, description="USD per million tokens, by model name")
    bench_after_failures: int = Field(default=3, ge=1, description="failed calls in a row that bench a model")
    bench_s: float = Field(default=120.0, ge=0, description="how long a benched model sits out")
