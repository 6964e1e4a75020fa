"""The labelled novelty set of evals/bench_memory.py: rewritten duplicates of zoo losses and genuinely
different losses, each paired with the zoo loss it is (or is not) a copy of.

Duplicates (same function, different text): variables and function renamed (comments kept), comments
replaced, commutative terms reordered (via the AST, so the layout changes too), and hand-written
algebraically equal forms. Novel: each zoo loss against a memory without it (leave-one-out), changed
constants, and new terms.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize

from pydantic import BaseModel

from targets.dpo.zoo import get_zoo_loss, zoo_names

SIG = "self, policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps"
RHO = "(policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)"
PARAMS = set(SIG.split(", "))
RESERVED = PARAMS | {"torch", "F", "math", "self"}


class Pair(BaseModel):
    """A query candidate and the zoo loss it is compared with; `duplicate` is the label."""

    kind: str
    base: str
    """The zoo loss: the true source of a duplicate, or the nearest relative of a novel loss."""
    code: str
    duplicate: bool
    leave_out: bool = False
    """Leave-one-out: memory must not hold `base` itself when this query is judged."""


def _tokens_map(code: str, fn: object) -> str:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        out.append(fn(tok))  # type: ignore[operator]
    return tokenize.untokenize(out)


def renamed(code: str) -> str:
    """Every local variable and the function renamed; comments and layout kept."""
    tree = ast.parse(code)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    local = sorted({n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)})
    mapping = {name: f"{name[:2]}_v{i}" for i, name in enumerate(local) if name not in RESERVED}
    mapping[fn.name] = f"candidate_{abs(hash(fn.name)) % 1000}"

    def swap(tok: tokenize.TokenInfo) -> tuple[int, str]:
        if tok.type == tokenize.NAME and tok.string in mapping and not keyword.iskeyword(tok.string):
            return (tok.type, mapping[tok.string])
        return (tok.type, tok.string)

    return _tokens_map(code, swap)


def comments_changed(code: str) -> str:
    """Every comment replaced by a different one (the citation line too)."""

    def swap(tok: tokenize.TokenInfo) -> tuple[int, str]:
        if tok.type == tokenize.COMMENT:
            return (tok.type, "# step of the loss (rewritten note)")
        return (tok.type, tok.string)

    return _tokens_map(code, swap)


class _Commute(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Add | ast.Mult):
            node.left, node.right = node.right, node.left
        return node


def reordered(code: str) -> str:
    """Operands of every + and * swapped; printed back by ast.unparse (comments and layout change)."""
    tree = _Commute().visit(ast.parse(code))
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


ALGEBRAIC: dict[str, list[str]] = {
    "dpo": [
        f"def dpo_softplus({SIG}):\n    z = self.beta * ({RHO})\n    return F.softplus(-z)\n",
        f"def dpo_log1p({SIG}):\n    z = self.beta * ({RHO})\n    return torch.log1p(torch.exp(-z))\n",
        f"def dpo_logsig({SIG}):\n    return -torch.log(torch.sigmoid(self.beta * ({RHO})))\n",
    ],
    "slic": [
        f"def slic_clamp({SIG}):\n    return torch.clamp(1.0 - self.beta * ({RHO}), min=0.0)\n",
        f"def slic_max({SIG}):\n    m = self.beta * ({RHO})\n"
        "    return torch.maximum(1 - m, torch.zeros_like(m))\n",
    ],
    "ipo": [
        f"def ipo_expanded({SIG}):\n    r = {RHO}\n    c = 0.5 / self.beta\n"
        "    return r * r - 2 * c * r + c * c\n",
        f"def ipo_pow({SIG}):\n    return torch.pow(({RHO}) - 1 / (2 * self.beta), 2)\n",
    ],
    "cdpo": [
        f"def cdpo_folded({SIG}):\n    z = self.beta * ({RHO})\n"
        "    return 0.9 * F.softplus(-z) + 0.1 * F.softplus(z)\n",
        f"def cdpo_shift({SIG}):\n    z = self.beta * ({RHO})\n    return F.softplus(-z) + 0.1 * z\n",
    ],
    "cell": [
        f"def cell_mean({SIG}):\n    z = self.beta * ({RHO})\n"
        "    return torch.stack([torch.exp(-z), F.softplus(-z)]).mean(dim=0)\n",
    ],
    "robust_dpo": [
        f"def robust_folded({SIG}):\n    z = self.beta * ({RHO})\n"
        "    return 1.125 * F.softplus(-z) - 0.125 * F.softplus(z)\n",
    ],
    "lrml": [
        f"def lrml_plain({SIG}):\n    z = self.beta * ({RHO})\n    w = torch.sigmoid(z / 0.05)\n"
        "    return (1 - w) * F.softplus(-z) + w * torch.exp(-z)\n",
    ],
}

NEW: list[tuple[str, str, str]] = [  # (kind, nearest zoo loss, code)
    ("constant", "slic", f"def slic2({SIG}):\n    return torch.relu(2.0 - self.beta * ({RHO}))\n"),
    ("constant", "ipo", f"def ipo_one({SIG}):\n    return (({RHO}) - 1 / self.beta) ** 2\n"),
    ("constant", "dpo", f"def dpo_2beta({SIG}):\n    return F.softplus(-2 * self.beta * ({RHO}))\n"),
    ("constant", "kto_pair", get_zoo_loss("kto_pair").code.replace(
        "return chosen_losses + rejected_losses", "return chosen_losses + 0.5 * rejected_losses")),
    ("new-term", "dpo", f"def dpo_sft({SIG}):\n    z = self.beta * ({RHO})\n"
                        "    return F.softplus(-z) - 0.1 * policy_chosen_logps\n"),
    ("new-term", "slic", f"def sq_hinge({SIG}):\n    return torch.relu(1 - self.beta * ({RHO})) ** 2\n"),
    ("new-term", "dpo", f"def dpo_cubed({SIG}):\n    z = self.beta * ({RHO})\n"
                        "    return F.softplus(-z) ** 3\n"),
    ("new-term", "ipo", f"def abs_ipo({SIG}):\n    return (({RHO}) - 1 / (2 * self.beta)).abs()\n"),
]  # fmt: skip


def changed_constant(code: str) -> str | None:
    """The last float literal of the code (not in a comment) multiplied by 2.5; None when there is none.

    The last, not the first: dbaql's first constant feeds a sigmoid that saturates on any realistic
    batch, so changing it changes nothing a trainer could notice.
    """
    head, body = code.split("\n", 1)
    # Comments blanked to spaces of the same length, so that offsets still point into `body`.
    code_only = re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), body)
    matches = list(re.finditer(r"(?<![\w.])(\d*\.\d+)(?![\w.])", code_only))
    if not matches or float(matches[-1].group(1)) in (0.0, 1.0):
        return None
    match = matches[-1]
    new = f"{float(match.group(1)) * 2.5:g}"
    return head + "\n" + body[: match.start()] + new + body[match.end() :]


def labelled_pairs() -> list[Pair]:
    pairs: list[Pair] = []
    for name in zoo_names():
        code = get_zoo_loss(name).code
        pairs += [
            Pair(kind="renamed", base=name, code=renamed(code), duplicate=True),
            Pair(kind="comments", base=name, code=comments_changed(code), duplicate=True),
            Pair(kind="reordered", base=name, code=reordered(code), duplicate=True),
        ]
        pairs += [Pair(kind="algebraic", base=name, code=c, duplicate=True) for c in ALGEBRAIC.get(name, [])]
        pairs.append(Pair(kind="leave-one-out", base=name, code=code, duplicate=False, leave_out=True))
        constant = changed_constant(code)
        if constant is not None:
            pairs.append(Pair(kind="constant", base=name, code=constant, duplicate=False))
    pairs += [Pair(kind=kind, base=base, code=code, duplicate=False) for kind, base, code in NEW]
    return pairs
