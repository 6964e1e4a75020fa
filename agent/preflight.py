"""Checks before a run's first candidate: what would otherwise fail on every candidate, or retry for hours.

The data dir is writable, the target can run (the agent-system target has an inner model and its data
file loads), and every model endpoint the run will call answers one cheap request (`GET /models`) and
serves the model named. Each failure is one `PreflightError` sentence; the command exits 2 before
creating the run, so nothing is recorded (no run dir, no memory record).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.models.settings import ModelSettings

PROBE_TIMEOUT_S = 10.0
"""One `GET /models`: a live server answers in milliseconds; a dead one must not hold the start long."""
SHOWN_MODELS = 5


class PreflightError(RuntimeError):
    """Something the person must fix before the run can do anything: one sentence."""


def check_data_dir(home: Path) -> None:
    """The data dir (or the folder it will be created in) takes a file: runs and memory are written there."""
    probe = home
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise PreflightError(f"the data dir {home} cannot be created: {probe} is not a folder")
    folders = [probe] + [d for d in (home / "runs", home / "memory") if d.is_dir()]
    for folder in folders:
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise PreflightError(
                f"the data dir {home} is not writable ({folder}: {why}); "
                "choose another with --home or DISCO_HOME"
            ) from None


def check_target(target: Any) -> None:
    """The target's own readiness (`not_ready()`, e.g. ADAS without an inner model or its data file)."""
    from targets.base import not_ready_of

    why = not_ready_of(target)
    if why:
        raise PreflightError(why)


def list_models(settings: ModelSettings, role: str) -> list[str] | None:
    """The model ids the endpoint serves (`GET <base_url>/models`); None when it does not say (no such
    route). PreflightError when it is unreachable, times out, refuses the key or fails."""
    import httpx

    url = settings.endpoint.rstrip("/") + "/models"
    key = settings.api_key.get_secret_value() if settings.api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    where = f"the {role} model endpoint {settings.endpoint}"
    try:
        reply = httpx.get(url, headers=headers, timeout=min(PROBE_TIMEOUT_S, settings.timeout_s))
    except httpx.TimeoutException:
        raise PreflightError(f"{where} did not answer within {PROBE_TIMEOUT_S:.0f} s") from None
    except httpx.HTTPError as exc:
        reason = _reason(exc)
        raise PreflightError(
            f"{where} is unreachable ({reason}): start the server, or fix --base-url / base_url"
        ) from None
    if reply.status_code in (401, 403):
        raise PreflightError(
            f"{where} refused the API key (HTTP {reply.status_code}): check OPENAI_API_KEY or api_key"
        )
    if reply.status_code in (404, 405, 501):
        return None  # a server without the route: reachable, and the first call will tell the rest
    if reply.status_code >= 400:
        raise PreflightError(f"{where} answered HTTP {reply.status_code} to GET /models")
    try:
        data = reply.json().get("data")
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        return None


def _reason(exc: Exception) -> str:
    """The root cause of a connection error in a few words ("connection refused", "name not known")."""
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(getattr(cause, "strerror", None) or cause or exc)
    return text.split("] ", 1)[-1].strip().lower() or type(exc).__name__


def _shown(models: list[str]) -> str:
    more = f", … ({len(models)} in all)" if len(models) > SHOWN_MODELS else ""
    return ", ".join(models[:SHOWN_MODELS]) + more


def check_endpoint(settings: ModelSettings, role: str) -> None:
    """The endpoint answers and, when it lists its models, serves the one configured."""
    settings.check_usable()
    served = list_models(settings, role)
    name = settings.model.strip()
    if served and name not in served and f"{name}:latest" not in served:
        raise PreflightError(
            f"the {role} model endpoint {settings.endpoint} does not serve {name!r} "
            f"(it serves {_shown(served)}): fix --model / model"
        )


def only_model(settings: ModelSettings) -> str:
    """For `--base-url` without `--model`: the server's model when it serves exactly one."""
    served = list_models(settings, "meta")
    if not served:
        raise PreflightError(
            f"--base-url was given without --model and {settings.endpoint} lists no model: "
            "name one with --model"
        )
    if len(served) > 1:
        raise PreflightError(
            f"--base-url was given without --model and {settings.endpoint} serves {len(served)} models "
            f"({_shown(served)}): name one with --model"
        )
    return served[0]


def endpoints_to_probe(
    models: Any, roles: Iterable[str], probe_meta: bool
) -> list[tuple[str, ModelSettings]]:
    """(role, settings) of every distinct online endpoint the run will call: the meta agent's unless it is
    offline or replayed, and the roles the target calls itself."""
    wanted = (["meta"] if probe_meta else []) + [r for r in roles if r != "meta"]
    out: list[tuple[str, ModelSettings]] = []
    seen: set[tuple[str, str, str]] = set()
    for role in wanted:
        settings: ModelSettings = getattr(models, role)
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        ident = (settings.endpoint, settings.model, key)
        if settings.offline or ident in seen:
            continue
        seen.add(ident)
        out.append((role, settings))
    return out


def check_endpoints(models: Any, roles: Iterable[str], probe_meta: bool) -> None:
    """Probe each endpoint the run will call; the first failure is the sentence."""
    from agent.models import ModelConfigError

    for role, settings in endpoints_to_probe(models, roles, probe_meta):
        try:
            check_endpoint(settings, role)
        except ModelConfigError as exc:
            raise PreflightError(str(exc).rstrip(".")) from None
