"""The DPO-loss candidate interface, compatible with the DiscoPOP paper's appendix code.

A candidate is the source of exactly one function

    def name(self, policy_chosen_logps, policy_rejected_logps,
             reference_chosen_logps, reference_rejected_logps) -> losses  # (B,)

which sees `self.beta` (and `self.label_smoothing`) and has `torch`, `F` (torch.nn.functional) and
`math` in its globals, so code copied from the paper runs unchanged.
"""

from __future__ import annotations

import ast
import math
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

CANDIDATE_PARAMS: tuple[str, ...] = (
    "self",
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
)
CANDIDATE_FILENAME = "<candidate>"


class CandidateError(Exception):
    """The candidate's code cannot be turned into a loss function; carries what a model needs to fix it."""

    def __init__(self, message: str, line: int | None = None, tb: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.traceback = tb


@dataclass
class LossContext:
    """What a candidate sees as `self`: DiscoPOP's losses read `self.beta`, TRL's `self.label_smoothing`."""

    beta: float
    label_smoothing: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that are not fields: give the candidate a clear error.
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"the loss context has no attribute {name!r}; available: beta, label_smoothing")


def candidate_globals() -> dict[str, Any]:
    """The names a candidate may use without importing them."""
    return {"torch": torch, "F": F, "math": math, "__name__": "disco_candidate"}


def find_function(tree: ast.Module) -> ast.FunctionDef:
    """Return the module's single top-level function or raise a CandidateError saying what is wrong."""
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if len(functions) != 1:
        names = ", ".join(f.name for f in functions) or "none"
        raise CandidateError(
            f"the candidate must define exactly one top-level function; found {len(functions)} ({names})",
            line=functions[1].lineno if len(functions) > 1 else None,
        )
    fn = functions[0]
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if tuple(params) != CANDIDATE_PARAMS or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs:
        raise CandidateError(
            f"function {fn.name!r} has parameters ({', '.join(params)}); expected exactly "
            f"({', '.join(CANDIDATE_PARAMS)})",
            line=fn.lineno,
        )
    return fn


@dataclass
class CandidateLoss:
    """A compiled candidate: call it with a β and the four (B,) log-prob tensors."""

    name: str
    code: str
    fn: Any

    def __call__(
        self,
        context: LossContext,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
    ) -> torch.Tensor:
        return self.fn(
            context,
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        )


def load_candidate(code: str) -> CandidateLoss:
    """Compile candidate source into a CandidateLoss.

    Raises CandidateError (never anything else) for syntax errors, a wrong number of functions, a wrong
    signature, or an error while the module body runs. This does not police what the code imports:
    that is the static policy's job, run before this.
    """
    try:
        tree = ast.parse(code, filename=CANDIDATE_FILENAME)
    except SyntaxError as exc:
        raise CandidateError(f"syntax error: {exc.msg}", line=exc.lineno) from None
    fn_node = find_function(tree)
    namespace = candidate_globals()
    try:
        exec(compile(tree, CANDIDATE_FILENAME, "exec"), namespace)
    except Exception as exc:  # the module body is model-written: any error is the candidate's
        raise CandidateError(
            f"defining the candidate raised {type(exc).__name__}: {exc}",
            line=error_line(exc),
            tb=format_candidate_traceback(exc),
        ) from None
    return CandidateLoss(name=fn_node.name, code=code, fn=namespace[fn_node.name])


def error_line(exc: BaseException) -> int | None:
    """The deepest line of the candidate's own code in an exception's traceback, if any."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == CANDIDATE_FILENAME:
            line = frame.lineno
    return line


def format_candidate_traceback(exc: BaseException, code: str | None = None) -> str:
    """A traceback trimmed to the candidate's frames, with its source lines filled in when given."""
    lines = code.splitlines() if code else []
    out = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename != CANDIDATE_FILENAME:
            continue
        src = lines[frame.lineno - 1].strip() if frame.lineno and 0 < frame.lineno <= len(lines) else ""
        out.append(f"  line {frame.lineno}, in {frame.name}\n    {src}".rstrip())
    out.append(f"{type(exc).__name__}: {exc}")
    return "\n".join(out)
