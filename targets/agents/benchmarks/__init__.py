"""Benchmarks of the agent-system target by name, each from its standard file format."""

from __future__ import annotations

import importlib
from pathlib import Path

from targets.agents.benchmarks.base import Benchmark, BenchmarkError, Item, Splits

LOADERS: dict[str, str] = {
    "mgsm": "targets.agents.benchmarks.mgsm:load",
    "drop": "targets.agents.benchmarks.drop:load",
    "mmlu": "targets.agents.benchmarks.choice:load_mmlu",
    "gpqa": "targets.agents.benchmarks.choice:load_gpqa",
    "arc": "targets.agents.benchmarks.arc:load",
}


def load_benchmark(name: str, path: Path | str | None) -> Benchmark:
    """The benchmark `name` from `path`; BenchmarkError (one sentence) for anything a person must fix."""
    if name not in LOADERS:
        raise BenchmarkError(f"unknown benchmark {name!r}; choose one of: {', '.join(LOADERS)}")
    module, _, attr = LOADERS[name].partition(":")
    loader = getattr(importlib.import_module(module), attr)
    return loader(Path(path).expanduser() if path is not None else None)


__all__ = ["LOADERS", "Benchmark", "BenchmarkError", "Item", "Splits", "load_benchmark"]
