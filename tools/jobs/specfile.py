"""A job spec as a TOML file, the format of `disco jobs submit SPEC.toml`:

    candidate_name = "my_loss"
    candidate_file = "my_loss.py"      # or candidate_code = '''...''', or candidate = "ipo" (the zoo)
    time_limit_s = 3600
    stop_if_loss_above = 50.0          # optional: a finite loss this high is hopeless

    [train]                            # targets.dpo.real.RealDPOSpec
    model = "/models/Qwen2.5-0.5B"
    dataset = "pairs.jsonl"
    max_train_pairs = 2000

    [train.train]                      # targets.dpo.trainer.DPOTrainConfig
    beta = 0.1
    max_steps = 200

    [resources]
    gpus = 1
    gpu_memory_gb = 24

Relative paths (the candidate file, and a model or data set that exists there) are taken from the TOML
file's folder, so a spec and its files travel together.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tools.jobs.models import JobError, JobSpec


def _local(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute() and (base / path).exists():
        return str((base / path).resolve())
    return value


def _candidate(doc: dict[str, Any], base: Path) -> tuple[str | None, str]:
    """(a default name, the code) from exactly one of candidate_code, candidate_file, candidate."""
    given = [k for k in ("candidate_code", "candidate_file", "candidate") if k in doc]
    if len(given) != 1:
        raise JobError(
            "a job spec needs exactly one of candidate_code, candidate_file or candidate (a zoo name)"
        )
    key = given[0]
    value = doc.pop(key)
    if key == "candidate_code":
        return None, value
    if key == "candidate_file":
        path = (base / Path(value).expanduser()).resolve()
        if not path.is_file():
            raise JobError(f"the candidate file {path} does not exist")
        return path.stem, path.read_text()
    from targets.dpo.zoo import UnknownZooLoss, get_zoo_loss

    try:
        return value, get_zoo_loss(value).code
    except UnknownZooLoss as exc:
        raise JobError(str(exc)) from None


def load_spec_file(path: Path) -> JobSpec:
    """Read and validate a SPEC.toml; JobError with one sentence when it is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise JobError(f"the job spec file {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JobError(f"the job spec {path} is not valid TOML: {exc}") from None
    base = path.resolve().parent
    name, code = _candidate(doc, base)
    doc.setdefault("candidate_name", name or path.stem)
    doc["candidate_code"] = code
    train = doc.get("train")
    if isinstance(train, dict):
        for key in ("model", "dataset"):
            if isinstance(train.get(key), str):
                train[key] = _local(train[key], base)
    try:
        return JobSpec.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the spec"
        raise JobError(f"bad job spec {path.name}: {where}: {first['msg']}") from None
