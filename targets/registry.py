"""Targets by short name, file, module or entry point, imported lazily (a target's heavy imports happen
only when it is used).

A target is selected by a spec (`--target SPEC`, `target = "SPEC"` in the config), tried in this order:
a builtin short name (`TARGETS`); a path to a `.py` file or a package directory (a file inside a package
is imported under its package name, with the package's parent on `sys.path`); `package.module:factory`;
the name of an entry point in the group `disco.targets`. A factory is `make_target(options, env)`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from targets.base import TARGET_MEMBERS, Target, TargetEnv, TargetInfo, TargetSource, describe, summary_of
from targets.commands import FingerprintCall, TargetCommands

TARGETS: dict[str, tuple[str, str, str]] = {
    # name: (factory "module:function", config model "module:Class", one-line summary)
    "dpo": (
        "targets.dpo.target:make_target",
        "targets.dpo.target:DPOTargetConfig",
        "a preference-optimisation loss (DiscoPOP), scored on the toy task against DPO",
    ),
    "adas": (
        "targets.agents.target:make_target",
        "targets.agents.target:AgentTargetConfig",
        "an LLM agent system (ADAS forward(self, taskInfo)), scored on MGSM/DROP/MMLU/GPQA/ARC",
    ),
}

COMMANDS: dict[str, str] = {
    # name: "module:attribute" of the target's TargetCommands (targets/commands.py): its own `disco`
    # commands and how `disco memory` fingerprints an archive's code
    "dpo": "targets.dpo.commands:COMMANDS",
}


ENTRY_POINT_GROUP = "disco.targets"
DEFAULT_FACTORY = "make_target"
REQUIRED = TARGET_MEMBERS
"""What a loaded target must have: the `Target` protocol's members; the rest is optional (targets.base)."""


class TargetError(Exception):
    """A target that cannot be used; the message is one sentence for the person."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownTarget(TargetError, KeyError):
    """No target goes by that spec."""


class TargetLoadError(TargetError):
    """The target was found but does not load: an import error, no factory, a factory that fails."""


class ResolvedTarget(BaseModel):
    """Where a spec points: enough to import the factory, and the canonical spec a run records."""

    spec: str
    """Canonical: an absolute path for a file target, so that `disco resume` finds it from any directory."""
    source: TargetSource
    module: str
    attr: str
    root: str | None = None
    """The directory to put on `sys.path` (file targets)."""
    location: str = ""


def target_names() -> list[str]:
    return list(TARGETS)


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _choices() -> str:
    names = [*TARGETS, *(n for n in _entry_points() if n not in TARGETS)]
    return f"choose one of: {', '.join(names)}, or give a target file, a package directory or module:factory"


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or spec.endswith(".py") or spec.startswith(".") or Path(spec).exists()


def _module_of_file(path: Path) -> tuple[str, Path]:
    """The module name of a `.py` file and the directory that must be on `sys.path` to import it: the
    parent of its outermost package (a directory with `__init__.py`), else its own directory."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def _resolve_path(spec: str) -> ResolvedTarget:
    raw, attr = spec, DEFAULT_FACTORY
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isidentifier() and not Path(spec).exists():
        raw, attr = head, tail
    path = Path(raw).expanduser().resolve()
    if path.is_dir():
        init, file = path / "__init__.py", path / "target.py"
        if not init.is_file() and not file.is_file():
            raise UnknownTarget(f"directory {raw} holds no target: it needs an __init__.py or a target.py")
        path = file if file.is_file() else init
    elif not path.is_file():
        raise UnknownTarget(f"no target file {raw}; {_choices()}")
    elif path.suffix != ".py":
        raise UnknownTarget(f"target file {raw} is not a Python file (.py)")
    module, root = _module_of_file(path)
    canonical = str(path) if attr == DEFAULT_FACTORY else f"{path}:{attr}"
    return ResolvedTarget(
        spec=canonical, source="path", module=module, attr=attr, root=str(root), location=str(path)
    )


def resolve(spec: str) -> ResolvedTarget:
    """Where `spec` points, without importing it; raises UnknownTarget naming the valid choices."""
    spec = spec.strip()
    if spec in TARGETS:
        module, _, attr = TARGETS[spec][0].partition(":")
        return ResolvedTarget(
            spec=spec, source="builtin", module=module, attr=attr, location=TARGETS[spec][0]
        )
    if _looks_like_path(spec):
        return _resolve_path(spec)
    if ":" in spec:
        module, _, attr = spec.partition(":")
        if module and all(p.isidentifier() for p in module.split(".")) and attr.isidentifier():
            return ResolvedTarget(spec=spec, source="module", module=module, attr=attr, location=spec)
        raise UnknownTarget(f"target {spec!r} is not of the form package.module:factory")
    ep = _entry_points().get(spec)
    if ep is not None:
        module, _, attr = ep.value.partition(":")
        return ResolvedTarget(
            spec=spec, source="entry_point", module=module.strip(), attr=attr.strip() or DEFAULT_FACTORY,
            location=f"{ep.value} (entry point {ENTRY_POINT_GROUP})",
        )  # fmt: skip
    raise UnknownTarget(f"unknown target {spec!r}; {_choices()}")


def _refuse_shadowing(resolved: ResolvedTarget) -> None:
    """A file target's module (or one of its packages) already imported from elsewhere would silently
    stand in for the file that was asked for."""
    parts = resolved.module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        where = getattr(sys.modules.get(name), "__file__", None)
        if where and not Path(where).resolve().is_relative_to(str(resolved.root)):
            raise TargetLoadError(
                f"target {resolved.location} would be imported as {resolved.module!r}, but {name!r} is "
                f"already imported from {where}: rename it or put it in a package of its own"
            )


def _import(resolved: ResolvedTarget) -> Callable[..., Any]:
    if resolved.root is not None:
        _refuse_shadowing(resolved)
        if resolved.root not in sys.path:
            sys.path.insert(0, resolved.root)
    try:
        module = importlib.import_module(resolved.module)
    # A user's module can fail to import in any way; the person gets the error in one sentence.
    except Exception as exc:
        raise TargetLoadError(
            f"target {resolved.spec!r} does not import: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, resolved.attr, None)
    if not callable(factory):
        raise TargetLoadError(
            f"target {resolved.spec!r}: module {resolved.module} has no factory {resolved.attr!r} "
            "(a target module defines make_target(options, env))"
        )
    return factory


def get_target(name: str, options: dict[str, Any] | None, env: TargetEnv | Path) -> Target:
    """A target by spec with its options (the config's `[targets.SPEC]` table); `env` says where to cache
    and which models the target may call (a bare path: the cache dir, no models)."""
    from pydantic import ValidationError

    if isinstance(env, Path):
        env = TargetEnv(cache_dir=env)
    resolved = resolve(name)
    factory = _import(resolved)
    try:
        target = factory(options or {}, env)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise TargetLoadError(f"options of target {name!r}: {where}: {err['msg']}") from None
    except Exception as exc:  # a user's factory: its failure is reported, not a traceback
        raise TargetLoadError(f"target {name!r} failed to start: {type(exc).__name__}: {exc}") from None
    missing = [a for a in REQUIRED if not hasattr(target, a)]
    if missing:
        raise TargetLoadError(f"target {name!r} lacks {', '.join(missing)} (see targets/base.py: Target)")
    return target


def canonical_spec(spec: str) -> str:
    """The spec a run records (an absolute path for a file target); raises UnknownTarget."""
    return resolve(spec).spec


def describe_target(spec: str, env: TargetEnv | Path, options: dict[str, Any] | None = None) -> TargetInfo:
    """A target's full declaration (it is built with its default options, then closed)."""
    resolved = resolve(spec)
    target = get_target(spec, options, env)
    try:
        return describe(target, resolved.spec, resolved.source, resolved.location)
    finally:
        target.close()


def list_targets(env: TargetEnv | Path) -> list[TargetInfo]:
    """The builtins and the installed entry points, each with its one-line summary (an entry point that
    does not load says why in its summary)."""
    out = [
        TargetInfo(spec=n, name=n, summary=TARGETS[n][2], source="builtin", location=TARGETS[n][0])
        for n in TARGETS
    ]
    for name, ep in sorted(_entry_points().items()):
        if name in TARGETS:
            continue
        info = TargetInfo(spec=name, name=name, summary="", source="entry_point", location=ep.value)
        try:
            target = get_target(name, None, env)
        except TargetError as exc:
            info.summary = f"(does not load: {exc})"
        else:
            info.name, info.summary = target.name, summary_of(target)
            target.close()
        out.append(info)
    return out


def declared_baseline(spec: str) -> str | None:
    """The name of what a target pairs its candidates against, built with its default options (the
    leaderboard's "vs …" column); a target declaring none gives None."""
    import os
    import tempfile

    from targets.base import baseline_of

    target = get_target(spec, None, Path(tempfile.gettempdir()) / f"disco-declared-{os.geteuid()}")
    try:
        return baseline_of(target)
    finally:
        target.close()


COMMANDS_GROUP = "disco.commands"
"""Entry points naming an installed target's TargetCommands, each named like its target."""


def _command_entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=COMMANDS_GROUP)}


def command_sources() -> dict[str, str]:
    """Target name → "module:attribute" of its TargetCommands: the builtins, then the entry points in
    the group `disco.commands` (a builtin's name is not taken over). Nothing is imported."""
    return COMMANDS | {n: v for n, v in _command_entry_points().items() if n not in COMMANDS}


def commands_of(name: str) -> TargetCommands | None:
    """What the target `name` adds to the CLI; None when it declares nothing. Raises TargetLoadError when
    its declaration does not import or is not a TargetCommands."""
    source = command_sources().get(name)
    if source is None:
        return None
    module, _, attr = source.partition(":")
    try:
        found = getattr(importlib.import_module(module.strip()), attr.strip() or "COMMANDS")
    # A user's package can fail to import in any way; the person gets the error in one sentence.
    except Exception as exc:
        raise TargetLoadError(
            f"the commands of target {name!r} ({source}) do not load: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(found, TargetCommands):
        raise TargetLoadError(
            f"the commands of target {name!r}: {source} is a {type(found).__name__}, not a TargetCommands "
            "(targets/commands.py)"
        )
    return found


def archive_fingerprint(name: str) -> FingerprintCall | None:
    """How the target `name` fingerprints bare code in the sandbox; None when it cannot (or its commands
    do not load: the archive is then judged by text alone)."""
    try:
        declared = commands_of(name)
    except TargetLoadError:
        return None
    return declared.archive_fingerprint if declared else None
