"""`disco models probe`: what an OpenAI-compatible server honours, asked once and cached (issue 18.1)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from agent.commands.errors import fail

models_app = typer.Typer(help="Model endpoints: what a server supports.", no_args_is_help=True)

MODES_SAID = {
    "json_schema": "JSON schema (response_format json_schema)",
    "json_object": "JSON object + schema in the prompt",
    "function_calling": "a named function call",
    "prompt": "JSON asked for in the prompt",
}


@models_app.command("probe")
def probe_cmd(
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="The endpoint (…/v1). Default: $OPENAI_BASE_URL.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="The model. Default: $DISCO_MODEL, else the one the server lists."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ask the server which structured-output modes and which token-cap field it honours (a few requests
    of at most 64 tokens), print the table, and keep it in the data dir, where runs start from it."""
    from agent.home import disco_home
    from agent.models import ModelError, ModelSettings
    from agent.models.probe import probe, remember
    from agent.models.settings import settings_from_env
    from agent.preflight import PreflightError, only_model

    settings = settings_from_env(ModelSettings(), os.environ)
    update: dict[str, object] = {}
    if base_url:
        update["base_url"] = base_url.rstrip("/")
    if model:
        update["model"] = model
    settings = settings.model_copy(update=update)
    if settings.base_url is None and settings.api_key is None:
        raise fail("name the endpoint to probe with --base-url (or OPENAI_BASE_URL)")
    try:
        if settings.offline:
            settings = settings.model_copy(update={"model": only_model(settings)})
            typer.echo(f"model: {settings.model} (the only one {settings.endpoint} serves)", err=True)
        found = probe(settings)
    except PreflightError as exc:
        raise fail(str(exc)) from None
    except ModelError as exc:
        raise fail(exc.message.rstrip(".")) from None
    saved = remember(disco_home(), settings, found)
    if as_json:
        typer.echo(json.dumps(found.model_dump(mode="json") | {"best_mode": found.best_mode}, indent=2))
        return
    typer.echo(f"{found.model} at {found.base_url} (probed in {found.seconds:g} s)")
    for mode, said in MODES_SAID.items():
        verdict = found.modes.get(mode, "not asked")
        answer = "yes" if verdict == "ok" or verdict.startswith("accepted") else "no "
        typer.echo(f"  {mode:<17} {answer}  {said if verdict == 'ok' else verdict}")
    tools = "yes" if found.tools_auto == "ok" else "no   " + found.tools_auto
    typer.echo(f"  tools (auto)      {tools}")
    for field, verdict in found.caps.items():
        typer.echo(f"  cap in {field:<22} {'honoured' if verdict == 'ok' else verdict}")
    window = found.context_tokens
    stated = f"{window} tokens" if window else "not stated (learned from the first request that overflows it)"
    typer.echo(f"  context window    {stated}")
    cap = found.cap_field or "neither field (the cap is not enforced by this server)"
    typer.echo(f"auto mode starts at {found.best_mode}; the cap goes in {cap}. Saved in {saved}.")
