"""Targets by short name, imported lazily (a target's heavy imports happen only when it is used)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from targets.base import Target, TargetEnv

TARGETS: dict[str, tuple[str, str, str]] = {
    # name: (factory "module:function", config model "module:Class", one-line summary)
    "dpo": (
        "targets.dpo.target:make_target",
        "targets.dpo.target:DPOTargetConfig",
        "a preference-optimisation loss (DiscoPOP), scored on the toy task against DPO",
    ),
}


class UnknownTarget(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def target_names() -> list[str]:
    return list(TARGETS)


def get_target(name: str, options: dict[str, Any] | None, env: TargetEnv | Path) -> Target:
    """A target by name with its options (the config's `[targets.NAME]` table); `env` says where to cache
    and which models the target may call (a bare path: the cache dir, no models)."""
    if isinstance(env, Path):
        env = TargetEnv(cache_dir=env)
    if name not in TARGETS:
        raise UnknownTarget(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    factory_path = TARGETS[name][0]
    module_name, _, attr = factory_path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(options or {}, env)
