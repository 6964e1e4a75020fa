"""The escape suite: every attack in tests/escapes/ on every backend, contained with the right status
and the calling process unharmed (one row per attack per backend)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from escapes.table import ATTACKS, LOSS_TRICKS, Attack, Bait, bait, loss_trick_code
from sandbox_backends import BACKENDS, open_sandbox

from sandbox.base import Sandbox
from sandbox.models import SandboxRequest
from targets.dpo.policy import LOSS_ALLOWED_IMPORTS


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    yield from open_sandbox(request.param)


@pytest.fixture(scope="module")
def host_bait() -> Iterator[Bait]:
    with bait() as b:
        yield b


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_contained(sandbox: Sandbox, host_bait: Bait, attack: Attack) -> None:
    cwd, env = Path.cwd(), dict(os.environ)
    result = sandbox.run(host_bait.request(attack))
    assert host_bait.problems(attack, result) == [], result.model_dump(exclude={"files"})
    # The calling process: alive (we are here), same directory, same environment.
    assert Path.cwd() == cwd and dict(os.environ) == env
    if attack.expected == "timeout":  # killed on time, SIGTERM ignored or not
        assert result.duration_s < attack.timeout_s + 2.0


@pytest.mark.parametrize("trick", list(LOSS_TRICKS))
def test_loss_import_trick_is_refused_before_running(sandbox: Sandbox, trick: str) -> None:
    request = SandboxRequest(code=loss_trick_code(trick), allowed_imports=LOSS_ALLOWED_IMPORTS)
    result = sandbox.run(request)
    assert result.status == "policy", result.reason
    assert result.exit_code is None and result.duration_s == 0.0
    assert result.policy and all(v.message.startswith(f"line {v.line}:") for v in result.policy)


def test_sandbox_still_works_after_the_attacks(sandbox: Sandbox) -> None:
    result = sandbox.run(SandboxRequest(code="print(6 * 7)"))
    assert (result.status, result.stdout) == ("ok", "42\n")
