"""The DPO loss fingerprint: equal functions match, different ones do not, bad code is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_memory_helpers import DPO_RENAMED, DPO_TAU_CHANGED, SIG

from memory.novelty import NoveltyConfig, fingerprint_similarity
from targets.dpo.fingerprint import DIM, FingerprintError, loss_fingerprint
from targets.dpo.zoo import get_zoo_loss, zoo_names


def sim(a: str, b: str) -> float:
    fa, fb = np.array(loss_fingerprint(a)), np.array(loss_fingerprint(b))
    return fingerprint_similarity(float(((fa - fb) ** 2).sum()), DIM)


THRESHOLD = NoveltyConfig().fingerprint_threshold
IPO_EXPANDED = f"""def ipo_expanded({SIG}):
    r = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    c = 1 / (2 * self.beta)
    return r * r - 2 * c * r + c ** 2  # (r - c)^2 expanded
"""


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (get_zoo_loss("dpo").code, DPO_RENAMED),  # renamed, reordered, softplus(-z) for -logsigmoid(z)
        (get_zoo_loss("ipo").code, IPO_EXPANDED),  # algebraically equal, constant folded
    ],
)
def test_rewritten_losses_have_the_same_fingerprint(a: str, b: str) -> None:
    assert sim(a, b) > 0.999


def test_a_changed_constant_is_a_different_behaviour() -> None:
    assert sim(get_zoo_loss("lrml").code, DPO_TAU_CHANGED) < THRESHOLD


def test_every_zoo_loss_is_distinct_from_every_other() -> None:
    names = zoo_names()
    fps = {n: np.array(loss_fingerprint(get_zoo_loss(n).code)) for n in names}
    assert all(len(v) == DIM and np.isfinite(v).all() for v in fps.values())
    worst = max(
        fingerprint_similarity(float(((fps[a] - fps[b]) ** 2).sum()), DIM)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    )
    assert worst < THRESHOLD


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import os\n" + get_zoo_loss("dpo").code, "static policy"),
        ("def f(x):\n    return x\n", "does not load"),
        (f"def f({SIG}):\n    raise ValueError('boom')\n", "raised ValueError: boom"),
        (f"def f({SIG}):\n    return policy_chosen_logps.sum()\n", "expected shape"),
        (f"def f({SIG}):\n    while True:\n        pass\n", "did not return within"),
    ],
)
def test_bad_losses_raise_a_fingerprint_error(code: str, message: str) -> None:
    with pytest.raises(FingerprintError, match=message):
        loss_fingerprint(code, time_limit_s=0.3)


def test_similarity_is_one_for_equal_and_falls_with_distance() -> None:
    assert fingerprint_similarity(0.0, DIM) == 1.0
    assert math.isclose(fingerprint_similarity(0.01**2 * DIM, DIM), math.exp(-0.01))
