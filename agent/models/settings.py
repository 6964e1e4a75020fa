"""Which model each role of the agent talks to, and how: one pydantic config per role.

Layering (lowest to highest precedence): these defaults < the TOML file < environment variables
(`settings_from_env`) < CLI flags. Loading never fails on a missing endpoint; `check_usable()` says so
in one sentence when the model is about to be used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from sandbox.redact import register_secret

OFFLINE = "offline"
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


class ModelConfigError(ValueError):
    """A model setting a person must fix; the message is one sentence for them."""


class ModelSettings(BaseModel):
    """One model endpoint and how to call it."""

    model: str = OFFLINE
    """The model name sent to the server; "offline" means the built-in proposer and no LLM at all."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint ending in /v1 (vLLM, Ollama, llama.cpp, OpenRouter); None is OpenAI."""
    api_key: SecretStr | None = None
    """The key; falls back to OPENAI_API_KEY. A local server without one gets the placeholder "not-needed"."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds to wait for the next token (the first included): replies are streamed, so a slow but working
    server is never cut off, and a stalled one is given up after this long and not re-sent."""
    max_retries: int = Field(default=3, ge=0)
    """Re-sends with backoff after 408/409/429/5xx and connection errors; never after a stall (a server that
    handles one request at a time would still be working on the first)."""
    temperature: float | None = 0.8
    """Sampling temperature; None leaves it to the server (some reasoning models take only their default)."""
    max_tokens: int | None = Field(default=4096, gt=0)
    """Cap on generated tokens per call; None leaves it to the server."""
    structured: Literal["auto", "json_schema", "json_object", "function_calling", "prompt"] = "auto"
    """How to get JSON: "auto" starts at what `disco models probe` found the server honours (cached in the
    data dir), else at JSON-schema mode, and steps down json_schema → json_object → prompt when the server
    rejects a response format, whatever the HTTP status (llama-cpp-python answers 500)."""
    context_tokens: int | None = Field(default=None, gt=0)
    """The server's context window (prompt and reply together), e.g. llama.cpp's --n_ctx. None: what the
    server says (its /v1/models or /props, read by the probe, or the error of a request that overflows it);
    a prompt is then cut to fit (the past attempts it shows go first) and the reply cap to what is left."""
    cap_field: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    """The request field that carries max_tokens: "auto" is max_completion_tokens for OpenAI itself and
    max_tokens for every other server (llama.cpp ignores max_completion_tokens; vLLM, Ollama take both)."""
    fix_attempts: int = Field(default=2, ge=0)
    """Rounds of "your JSON was invalid, here is the error, fix it" before a call counts as malformed."""
    usd_per_mtok_in: float | None = None
    """Price per million prompt tokens, for the cost budget; None when unknown or free."""
    usd_per_mtok_out: float | None = None
    """Price per million completion tokens, for the cost budget; None when unknown or free."""

    @field_validator("api_key")
    @classmethod
    def _register_key(cls, key: SecretStr | None) -> SecretStr | None:
        """Every configured key, from any layer (file, environment, flags), is redacted from candidate
        text from the moment it is known (sandbox.redact): a key must never reach a record or a prompt."""
        if key is not None:
            register_secret(key.get_secret_value(), "api_key")
        return key

    @property
    def offline(self) -> bool:
        """True when no LLM is configured and the offline proposer drives the run."""
        return self.model.strip().lower() == OFFLINE

    @property
    def cap_in(self) -> str:
        """The field this endpoint's token cap goes in (see `cap_field`)."""
        if self.cap_field != "auto":
            return self.cap_field
        return "max_completion_tokens" if self.endpoint.startswith(OPENAI_DEFAULT_BASE_URL) else "max_tokens"

    @property
    def endpoint(self) -> str:
        """The endpoint as people should read it in messages."""
        return self.base_url or OPENAI_DEFAULT_BASE_URL

    def check_usable(self) -> None:
        """Raise ModelConfigError when this model cannot be called; an offline model is always usable."""
        if self.offline:
            return
        if not self.model.strip():
            raise ModelConfigError("The model name is empty: name a model, or use 'offline'.")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ModelConfigError(
                f"The model endpoint {self.base_url!r} is not a URL: give it as http(s)://host:port/v1."
            )
        if self.base_url is None and self.api_key is None:
            raise ModelConfigError(
                f"Model {self.model!r} has no endpoint: set OPENAI_API_KEY to use OpenAI, or OPENAI_BASE_URL "
                "(base_url in the config file) to use an OpenAI-compatible server."
            )

    def price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The cost in USD of these tokens, or None when no price is set."""
        if self.usd_per_mtok_in is None and self.usd_per_mtok_out is None:
            return None
        usd_in = (self.usd_per_mtok_in or 0.0) * prompt_tokens
        usd_out = (self.usd_per_mtok_out or 0.0) * completion_tokens
        return (usd_in + usd_out) / 1_000_000


class ModelsConfig(BaseModel):
    """The three roles that may use different models."""

    meta: ModelSettings = ModelSettings()
    """The meta agent: design, reflect, repair, and the chat."""
    inner: ModelSettings = ModelSettings()
    """The inner agents of the agent-system target (ADAS), called many times per candidate."""
    judge: ModelSettings = ModelSettings()
    """The LLM judge of the expensive evaluators."""


def settings_from_env(base: ModelSettings, env: Mapping[str, str]) -> ModelSettings:
    """Apply the environment on top of `base`: OPENAI_API_BASE / OPENAI_BASE_URL, OPENAI_API_KEY, DISCO_MODEL.

    OPENAI_API_BASE wins over OPENAI_BASE_URL, as in langchain-openai. Empty variables are ignored. An
    endpoint or key alone never switches an offline run to an LLM: the person must name the model.
    """
    update: dict[str, object] = {}
    base_url = env.get("OPENAI_API_BASE") or env.get("OPENAI_BASE_URL")
    if base_url:
        update["base_url"] = base_url.rstrip("/")
    if key := env.get("OPENAI_API_KEY"):
        update["api_key"] = SecretStr(key)
    if model := env.get("DISCO_MODEL"):
        update["model"] = model.strip()
    for variable, field in MODEL_SETTING_ENV.items():
        if value := env.get(variable, "").strip():
            update[field] = value
    return ModelSettings.model_validate(base.model_dump() | update) if update else base


MODEL_SETTING_ENV = {
    "DISCO_STRUCTURED": "structured",
    "DISCO_TIMEOUT_S": "timeout_s",
    "DISCO_REPLY_TOKENS": "max_tokens",
    "DISCO_CONTEXT_TOKENS": "context_tokens",
}
"""The meta model's call settings a person changes per run, as variables (the flags `--structured`,
`--timeout`, `--reply-tokens`, `--context-tokens` win over them): validated like the file's, so a bad value
is one sentence."""


ROLE_ENV_PREFIX = {"inner": "DISCO_INNER_", "judge": "DISCO_JUDGE_"}
"""Role-specific variables: DISCO_INNER_MODEL / _BASE_URL / _API_KEY, and the same for DISCO_JUDGE_."""


def models_from_env(models: ModelsConfig, env: Mapping[str, str]) -> ModelsConfig:
    """Layer the environment onto every role while keeping the roles separate.

    The meta agent takes OPENAI_* and DISCO_MODEL (`settings_from_env`). The inner agents and the judge
    keep what the config file gave them: only their own DISCO_INNER_* / DISCO_JUDGE_* variables override
    it. A role the file leaves offline uses the meta agent's model and endpoint, so one configured model
    serves every role; a role with its own model but no endpoint or key takes them from OPENAI_*.
    """
    meta = settings_from_env(models.meta, env)
    shared = {"model", "base_url", "api_key", "usd_per_mtok_in", "usd_per_mtok_out"}
    update: dict[str, ModelSettings] = {"meta": meta}
    for role, prefix in ROLE_ENV_PREFIX.items():
        own: ModelSettings = getattr(models, role)
        if own.offline and not env.get(f"{prefix}MODEL"):
            own = own.model_copy(update={k: getattr(meta, k) for k in shared})
        role_update: dict[str, object] = {}
        if not own.offline:  # its own model: only the gaps (endpoint, key) come from OPENAI_*
            gaps = settings_from_env(own, {k: v for k, v in env.items() if k.startswith("OPENAI_")})
            role_update |= {k: getattr(gaps, k) for k in ("base_url", "api_key") if getattr(own, k) is None}
        if model := env.get(f"{prefix}MODEL", "").strip():
            role_update["model"] = model
        if base_url := env.get(f"{prefix}BASE_URL", "").strip():
            role_update["base_url"] = base_url.rstrip("/")
        if key := env.get(f"{prefix}API_KEY"):
            role_update["api_key"] = SecretStr(key)
        update[role] = own.model_copy(update=role_update)
    return models.model_copy(update=update)
