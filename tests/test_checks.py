"""The DPO-loss checks: one row per bad candidate, every zoo loss, the paper's own code, the policy."""

from __future__ import annotations

import ast
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

import sandbox.policy as policy_module
from sandbox.policy import check_policy
from targets.dpo.checks import CHECK_NAMES, check_candidate
from targets.dpo.policy import LOSS_ALLOWED_IMPORTS
from targets.dpo.zoo import list_zoo
from targets.results import CheckReport, CheckResult

torch.set_num_threads(1)

SIG = (
    "def loss(self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
    "reference_rejected_logps):"
)
RHO = (
    "    rho = (policy_chosen_logps - policy_rejected_logps) - "
    "(reference_chosen_logps - reference_rejected_logps)"
)


def body(*lines: str) -> str:
    """A candidate with the right signature, ρ computed, and `lines` as the rest of its body."""
    return "\n".join([SIG, RHO, *(f"    {line}" for line in lines)]) + "\n"


# The DiscoPOP paper's appendix LRML, as published: annotations, comments, the inf·0 NaN and all.
PAPER_LRML = """\
def log_ratio_modulated_loss(
    self,
    policy_chosen_logps: torch.FloatTensor,
    policy_rejected_logps: torch.FloatTensor,
    reference_chosen_logps: torch.FloatTensor,
    reference_rejected_logps: torch.FloatTensor,
) -> torch.FloatTensor:
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    logits = logits * self.beta
    # Modulate the mixing coefficient based on the log ratio magnitudes
    tau = 0.05
    log_ratio_modulation = torch.sigmoid(logits / tau)
    logistic_component = -F.logsigmoid(logits)
    exp_component = torch.exp(-logits)
    # Blend between logistic and exponential component based on log ratio modulation
    losses = logistic_component * (1 - log_ratio_modulation) + exp_component * log_ratio_modulation
    return losses
"""

# Paper-style code that imports F inside the function and uses typing: must run unchanged.
PAPER_STYLE_DPO = '''\
from typing import Optional


def sigmoid_loss(
    self,
    policy_chosen_logps: torch.FloatTensor,
    policy_rejected_logps: torch.FloatTensor,
    reference_chosen_logps: torch.FloatTensor,
    reference_rejected_logps: torch.FloatTensor,
) -> torch.FloatTensor:
    """Plain DPO."""
    import torch.nn.functional as F

    scale: Optional[float] = None
    pi_logratios = policy_chosen_logps - policy_rejected_logps
    ref_logratios = reference_chosen_logps - reference_rejected_logps
    logits = pi_logratios - ref_logratios
    losses = -F.logsigmoid(self.beta * logits)
    return losses
'''

INFINITE_LOOP = body("while True:", "    pass", "return -F.logsigmoid(self.beta * rho)")

# (id, code, the check that must fail, a phrase its message must contain)
BAD = [
    ("syntax-error", f"{SIG}\n    return (\n", "policy", "syntax error"),
    ("wrong-signature", "def loss(self, chosen, rejected):\n    return chosen - rejected\n", "signature",
     "expected exactly"),
    ("two-functions", body("return -F.logsigmoid(self.beta * rho)") + "\n\ndef helper(x):\n    return x\n",
     "signature", "exactly one top-level function; found 2"),
    ("scalar-mean", body("return -F.logsigmoid(self.beta * rho).mean()"), "output_shape", "a scalar"),
    ("column-B1", body("return -F.logsigmoid(self.beta * rho).unsqueeze(1)"), "output_shape", "(B, 1)"),
    ("concat-2B", body("return torch.cat([-F.logsigmoid(self.beta * rho), -F.logsigmoid(self.beta * rho)])"),
     "output_shape", "2B values"),
    ("not-a-tensor", body("return 1.0"), "output_shape", "returned float"),
    ("nan-at-extremes", body("return -F.logsigmoid(self.beta * rho) + 0 * torch.exp(-self.beta * rho)"),
     "finite_extreme", "loss is NaN at ρ=-1000 with β=0.1"),
    ("nan-ordinary", body("return torch.sqrt(self.beta * rho)"), "finite_ordinary", "NaN"),
    ("import-os", body("import os", "return -F.logsigmoid(self.beta * rho)"), "policy", "importing `os`"),
    ("dunder-import", body("os = __import__('os')", "return -F.logsigmoid(self.beta * rho)"), "policy",
     "`__import__` is not allowed"),
    ("getattr-load", body("getattr(torch, 'lo' + 'ad')('x.pt')", "return -F.logsigmoid(self.beta * rho)"),
     "policy", "`getattr` is not allowed"),
    ("subclasses", body("().__class__.__base__.__subclasses__()", "return -F.logsigmoid(self.beta * rho)"),
     "policy", "dunder attribute `.__class__`"),
    ("torch-load", body("torch.load('weights.pt')", "return -F.logsigmoid(self.beta * rho)"), "policy",
     "`torch.load` is not an allowed operation"),
    ("F-torch-os", body("F.torch.os.system('ls')", "return -F.logsigmoid(self.beta * rho)"), "policy",
     "`F.torch` is not an allowed operation"),
    ("global", body("global counter", "return -F.logsigmoid(self.beta * rho)"), "policy", "`global counter`"),
    ("wrong-direction", body("return -F.logsigmoid(-self.beta * rho)"), "preference_direction",
     "at every β the loss does not decrease"),
    ("constant-loss", body("return torch.ones_like(policy_chosen_logps)"), "gradients", "no gradient"),
    ("flat-loss", body("return 0 * rho + 1"), "gradients", "exactly zero for all 64 pairs"),
    ("random", body("return -F.logsigmoid(self.beta * rho) + torch.rand_like(rho)"), "policy",
     "a loss must be deterministic"),
    ("raises", body("raise ValueError('margin out of range')"), "output_shape",
     "ValueError: margin out of range"),
    ("shape-depends-on-values", body("return rho[rho > 0]"), "output_shape", "for a batch of"),
    ("bad-attribute", body("return -F.logsigmoid(self.temperature * rho)"), "output_shape", "AttributeError"),
]  # fmt: skip


@pytest.fixture(scope="module")
def zoo_reports() -> dict[str, CheckReport]:
    return {z.name: check_candidate(z.code) for z in list_zoo()}


def by_name(report: CheckReport) -> dict[str, CheckResult]:
    return {c.name: c for c in report.checks}


@pytest.mark.parametrize(("code", "check", "phrase"), [r[1:] for r in BAD], ids=[r[0] for r in BAD])
def test_bad_candidate_fails_the_right_check(code: str, check: str, phrase: str) -> None:
    report = check_candidate(code)
    checks = by_name(report)
    assert not report.passed
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    failed = checks[check]
    assert not failed.passed and failed.level == "error", failed
    assert phrase in failed.message, failed.message
    # No earlier check failed with an error; after policy, signature or shape, the rest are skipped.
    before = list(CHECK_NAMES)[: list(CHECK_NAMES).index(check)]
    assert all(checks[n].passed or checks[n].level != "error" for n in before)
    if check in ("policy", "signature", "output_shape"):
        after = list(CHECK_NAMES)[list(CHECK_NAMES).index(check) + 1 : -1]
        assert all(checks[n].level == "info" and checks[n].message.startswith("skipped:") for n in after)


def test_failures_name_the_line() -> None:
    code = body("x = rho * 2", "raise ValueError('margin out of range')")
    shape = by_name(check_candidate(code))["output_shape"]
    assert shape.line == 4
    assert shape.traceback is not None and "raise ValueError('margin out of range')" in shape.traceback
    policy = by_name(check_candidate(body("import os", "return rho")))["policy"]
    assert policy.line == 3 and policy.message.startswith("line 3:")


def test_infinite_loop_returns_within_the_budget() -> None:
    previous = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    report = check_candidate(INFINITE_LOOP, time_budget_s=1.0)
    assert time.monotonic() - start < 2.5
    checks = by_name(report)
    assert not report.passed
    assert not checks["output_shape"].passed and "did not return within" in checks["output_shape"].message
    assert checks["output_shape"].line in (3, 4)  # the loop, wherever the alarm caught it
    assert not checks["time_budget"].passed and checks["time_budget"].level == "error"
    assert checks["gradients"].message.startswith("skipped: the candidate ran out of time")
    assert signal.getsignal(signal.SIGALRM) is previous  # the caller's handler is restored


def test_a_loop_that_catches_exceptions_still_times_out() -> None:
    from targets.dpo.candidate import load_candidate
    from targets.dpo.checks import _ordinary, _Runner, _Stop

    code = body("while True:", "    try:", "        rho = rho + 0", "    except Exception:", "        pass")
    assert "`try` is not allowed" in by_name(check_candidate(code))["policy"].message
    # Behind the policy (defence in depth): `except Exception` cannot swallow the time limit.
    run = _Runner(code, deadline=time.monotonic() + 0.5, per_call_s=0.5)
    run.loss = load_candidate(code)
    start = time.monotonic()
    with pytest.raises(_Stop, match="did not return within"):
        run(0.1, _ordinary(4, seed=0))
    assert time.monotonic() - start < 2.0


def test_an_infinite_loop_at_module_level_times_out_in_signature() -> None:
    code = "while True:\n    pass\n\n\n" + body("return rho")
    report = check_candidate(code, time_budget_s=0.5)
    assert "did not return within" in by_name(report)["signature"].message


def test_from_another_thread_it_still_checks_without_signals() -> None:
    got: list[CheckReport] = []
    worker = threading.Thread(target=lambda: got.append(check_candidate(list_zoo()[0].code)))
    worker.start()
    worker.join(timeout=30)
    assert got and got[0].passed


@pytest.mark.parametrize("code", ["", "\x00\x01", "x = 1\n", "def f(:\n", "class A:\n    pass\n", "None"])
def test_never_raises_on_garbage(code: str) -> None:
    report = check_candidate(code)
    assert not report.passed and [c.name for c in report.checks] == list(CHECK_NAMES)


# The zoo ---------------------------------------------------------------------------------------------
BATCH_DEPENDENT = {"kto_pair", "aqfl", "aql", "dbaql"}
NON_MONOTONE_AT_SMALL_BETA = {"lrml", "aql"}
OVERFLOWS = {"cell", "dbaql"}  # exp(-βρ) is inf beyond βρ ≈ -88 in float32: an honest finite_extreme failure


@pytest.mark.parametrize("name", [z.name for z in list_zoo()])
def test_zoo_verdicts(zoo_reports: dict[str, CheckReport], name: str) -> None:
    checks = by_name(zoo_reports[name])
    errors = {c.name for c in zoo_reports[name].failures()}
    warnings = {c.name for c in zoo_reports[name].checks if not c.passed and c.level == "warning"}
    if name in OVERFLOWS:
        # cell and dbaql are published losses, but they do overflow: `disco losses check` exits 1 on them.
        assert errors == {"finite_extreme"} and not zoo_reports[name].passed
        extreme = checks["finite_extreme"]
        assert extreme.numbers["beta_rho"] == -100.0 and "ρ=-1000 with β=0.1" in extreme.message
    else:
        assert errors == set() and zoo_reports[name].passed
    expected_warnings = set()
    if name in BATCH_DEPENDENT:
        expected_warnings.add("batch_dependence")
    if name in NON_MONOTONE_AT_SMALL_BETA:
        expected_warnings.add("preference_direction")
    assert warnings == expected_warnings
    assert checks["batch_dependence"].level == "warning"


def test_quantile_losses_are_non_finite_for_a_batch_of_one(zoo_reports: dict[str, CheckReport]) -> None:
    for name in ("aqfl", "dbaql"):
        batch = by_name(zoo_reports[name])["batch_dependence"]
        assert batch.numbers["nonfinite_batch_of_1"] == 8 and "batch of 1" in batch.message


def test_direction_numbers_are_reported(zoo_reports: dict[str, CheckReport]) -> None:
    direction = by_name(zoo_reports["dpo"])["preference_direction"]
    assert direction.numbers["mean_dL_dchosen@beta=0.1"] < 0 < direction.numbers["mean_dL_drejected@beta=0.1"]
    lrml = by_name(zoo_reports["lrml"])["preference_direction"]
    assert lrml.numbers["wrong_betas"] == 1 and "β=0.01" in lrml.message


# The paper's own code ----------------------------------------------------------------------------
def test_paper_lrml_runs_unchanged_and_fails_only_finite_extreme_with_the_known_nan() -> None:
    report = check_candidate(PAPER_LRML)
    checks = by_name(report)
    assert checks["policy"].passed and checks["signature"].passed and checks["output_shape"].passed
    assert {c.name for c in report.failures()} == {"finite_extreme"}
    extreme = checks["finite_extreme"]
    assert "loss is NaN at ρ=-1000 with β=0.1" in extreme.message
    assert extreme.numbers == pytest.approx(
        extreme.numbers | {"rho": -1000.0, "beta": 0.1, "beta_rho": -100.0}
    )


def test_deterministic_check_still_catches_a_loss_that_draws() -> None:
    """The policy refuses random operations; the check behind it is the second line (defence in depth)."""
    from targets.dpo.candidate import load_candidate
    from targets.dpo.checks import _deterministic, _Runner

    code = body("return -F.logsigmoid(self.beta * rho) + torch.rand_like(rho)")
    run = _Runner(code, deadline=time.monotonic() + 10, per_call_s=2.0)
    run.loss = load_candidate(code)
    result = _deterministic(run)
    assert not result.passed and "different losses" in result.message


def test_paper_style_code_with_imports_and_annotations_passes() -> None:
    report = check_candidate(PAPER_STYLE_DPO)
    assert report.passed, report.failures()


# The policy on its own -------------------------------------------------------------------------------
POLICY = [
    ("import torch.nn.functional as F\nimport math\nfrom typing import Optional\n", None),
    ("x = torch.nn.functional.logsigmoid(torch.zeros(1))\n", None),
    ("import torch.hub\n", "forbidden-attribute"),
    ("from torch import load\n", "forbidden-attribute"),
    ("from torch.utils import cpp_extension\n", "forbidden-attribute"),
    ("import typing\ntyping.sys.modules\n", "forbidden-attribute"),
    ("torch.jit.script(f)\n", "forbidden-attribute"),
    ("torch.backends.cudnn.enabled = False\n", "forbidden-attribute"),
    ("x = torch._C\n", "private-attribute"),
    ("import numpy\n", "import"),
    ("from os import path\n", "import"),
    ("from . import x\n", "import"),
    ("from torch import *\n", "import"),
    ("f = eval\n", "forbidden-name"),
    ("raise SystemExit(3)\n", "forbidden-name"),
    ("def f():\n    nonlocal x\n", "scope-escape"),
    ("'{0.__class__}'.format(1)\n", "dunder-string"),
    ("x = __builtins__\n", "dunder"),
    ("try:\n    pass\nexcept:\n    pass\n", "bare-except"),
    ("match x:\n    case int(real=r):\n        pass\n", None),
    ("g = (x for x in ())\ng.gi_frame.f_back\n", "forbidden-attribute"),
    ("from typing import get_type_hints\n", "forbidden-attribute"),
    ("exit()\n", "forbidden-name"),
    ("match x:\n    case object(__class__=c):\n        pass\n", "dunder"),
]


@pytest.mark.parametrize(("code", "rule"), POLICY, ids=[f"{i}-{r}" for i, (_, r) in enumerate(POLICY)])
def test_policy_rules(code: str, rule: str | None) -> None:
    violations = check_policy(code, LOSS_ALLOWED_IMPORTS)
    assert [v.rule for v in violations][:1] == ([rule] if rule else [])
    assert all(v.message.startswith(f"line {v.line}:") for v in violations)


def test_policy_is_self_contained() -> None:
    """A later issue builds the sandbox around it: it must import nothing from the project."""
    tree = ast.parse(Path(policy_module.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m.split(".")[0] for m in imported} <= {"__future__", "ast", "re", "pydantic"}
