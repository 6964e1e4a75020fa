"""The static policy for DPO-loss candidates: an allow-list, not a deny-list (issue 15.5).

A deny-list names what is dangerous and loses to any spelling it did not foresee (`typing` re-exports
`re`, whose `enum` re-exports `builtins`; `torch.overrides` hands out a set of functions that includes
`torch.load`). A loss needs very little, so this policy names what is *allowed* and refuses the rest:

- calls to `torch.X`, `F.X` (torch.nn.functional) and `math.X` from explicit lists of pure operations,
  to a few builtins, to the loss's own local functions, and to tensor methods from an explicit list;
- attribute reads: those lists, a few tensor attributes (`shape`, `dtype`, ...) and `self.<plain name>`
  (`self.beta`, `self.label_smoothing`, the target's extra parameters);
- only the imports the interface grants (`import torch`, `import torch.nn.functional as F`,
  `import math`, `from typing import ...`); `typing` and tensor types only inside annotations;
- no attribute or item stores, no in-place methods (`x.add_()`), no `out=`/`inplace=`, no classes,
  decorators, `with`, `try`, `match`, `global`, generators or async code, no dunder names.

Nothing in the lists returns a module, a function, a storage or a file, or touches the autograd graph,
hooks, the RNG or a process-wide switch. The generic deny-list (`sandbox.policy.check_policy`) runs
too, as a backstop for lines this walker found clean. The sandbox and the guard around each call stay
the boundary; this is the cheap first filter, and the one whose messages a model can act on.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterator

from sandbox.policy import PolicyViolation, check_policy
from targets.dpo.policy import (
    ANNOTATION_BUILTINS,
    ANNOTATION_TENSOR_TYPES,
    BUILTINS,
    F_FUNCTIONS,
    F_POSITIONAL_LIMIT,
    FORBIDDEN_WORDS,
    LOSS_ALLOWED_IMPORTS,
    MATH_NAMES,
    TENSOR_ATTRIBUTES,
    TENSOR_METHODS,
    TORCH_FUNCTIONS,
    TORCH_VALUES,
    TYPING_NAMES,
)

_MODULES = {"torch": TORCH_FUNCTIONS | TORCH_VALUES, "torch.nn.functional": F_FUNCTIONS, "math": MATH_NAMES}
_SUBMODULES = {"torch.nn", "torch.nn.functional"}
_SHOWN = {"torch.nn.functional": "F"}
_DUNDER = re.compile(r"^__\w+__$")
_SELF_ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_]*$")
_AUTOGRAD = frozenset(
    {
        "grad", "grad_fn", "next_functions", "data", "variable", "is_leaf", "requires_grad",
        "retains_grad", "retain_grad", "backward", "register_hook", "register_post_accumulate_grad_hook",
        "storage", "untyped_storage", "data_ptr", "numpy", "share_memory_", "set_",
    }
)  # fmt: skip
_RANDOM = re.compile(r"^(rand\w*|bernoulli|multinomial|normal|poisson|\w*dropout\w*|rrelu\w*)$")
_STATEFUL = re.compile(r"^(set_|manual_seed|seed|initial_seed|use_deterministic|get_rng|autograd|random)")
_EXAMPLES = {
    "torch": "torch.exp, torch.log, torch.sigmoid, torch.tanh, torch.where, torch.clamp, torch.relu",
    "torch.nn.functional": "F.logsigmoid, F.softplus, F.relu, F.silu, F.gelu, F.mse_loss",
    "math": "math.log, math.exp, math.sqrt, math.pi",
}
_GRANTED = "`import torch`, `import torch.nn.functional as F`, `import math`, `from typing import ...`"
_STATEMENTS = {
    ast.ClassDef: "class definitions are not allowed in a loss; write one function",
    ast.AsyncFunctionDef: "async functions are not allowed in a loss",
    ast.AsyncFor: "`async for` is not allowed in a loss",
    ast.AsyncWith: "`async with` is not allowed in a loss",
    ast.With: "`with` is not allowed in a loss (context managers change process state)",
    ast.Try: "`try` is not allowed in a loss; let errors surface",
    ast.Match: "`match` is not allowed in a loss; use `if` or torch.where",
    ast.Await: "`await` is not allowed in a loss",
    ast.Yield: "`yield` is not allowed: a loss returns its tensor",
    ast.YieldFrom: "`yield` is not allowed: a loss returns its tensor",
}
for _name in ("TryStar", "TypeAlias"):  # newer Pythons
    if hasattr(ast, _name):
        _STATEMENTS[getattr(ast, _name)] = f"`{_name}` is not allowed in a loss"


def check_loss_policy(code: str) -> list[PolicyViolation]:
    """Every way `code` leaves the loss allow-list, one violation per construct, sorted by line.

    Empty means clean. Never executes the code. The generic deny-list runs as a backstop: its findings
    are added for lines this walker found clean.
    """
    generic = check_policy(code, LOSS_ALLOWED_IMPORTS)
    if any(v.rule == "syntax" for v in generic):
        return generic
    walker = _LossWalker(ast.parse(code))
    walker.run()
    found = walker.violations
    lines = {v.line for v in found}
    found += [v for v in generic if v.line not in lines]
    return sorted(found, key=lambda v: (v.line, v.col))


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the code binds anywhere (parameters, targets, loop and comprehension variables, defs)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


def _dotted(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


class _LossWalker(ast.NodeVisitor):
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.violations: list[PolicyViolation] = []
        self.locals = _bound_names(tree) - {"self"}
        self.aliases: dict[str, str] = {"torch": "torch", "F": "torch.nn.functional", "math": "math"}
        self.annotation_names: set[str] = set()
        """Names imported for annotations only (`Optional`, `Tensor`, the `typing` module itself)."""
        self.params: list[set[str]] = []
        self._seen: set[tuple[int, int, str]] = set()

    def run(self) -> None:
        self.collect_imports()
        self.visit(self.tree)

    def add(self, node: ast.AST, rule: str, what: str) -> None:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        if (line, col, what) in self._seen:
            return
        self._seen.add((line, col, what))
        self.violations.append(PolicyViolation(line=line, col=col, rule=rule, message=f"line {line}: {what}"))

    # Imports ----------------------------------------------------------------------------------------
    def collect_imports(self) -> None:
        """Which names imports bind, checked first so that a later use sees them wherever the import is."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.check_import(node, alias)
            elif isinstance(node, ast.ImportFrom):
                self.check_import_from(node)

    def check_import(self, node: ast.Import, alias: ast.alias) -> None:
        name, asname = alias.name, alias.asname
        if name in ("torch", "math") and asname in (None, name):
            return
        if name == "typing" and asname is None:
            self.annotation_names.add("typing")
            return
        if name == "torch.nn.functional" and asname in (None, "F"):
            return
        shown = f"importing `{name}`" + (f" as `{asname}`" if asname else "")
        self.add(node, "import", f"{shown} is not allowed; the interface grants only {_GRANTED}")

    def check_import_from(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            name, asname = alias.name, alias.asname
            if module == "torch.nn" and name == "functional" and asname == "F" and not node.level:
                continue
            if not node.level and asname is None:
                if module == "typing" and name in TYPING_NAMES:
                    self.annotation_names.add(name)
                    continue
                if module == "torch" and name in ANNOTATION_TENSOR_TYPES:
                    self.annotation_names.add(name)
                    continue
            shown = f"from {'.' * node.level}{module} import {name}" + (f" as {asname}" if asname else "")
            self.add(node, "import", f"`{shown}` is not allowed; the interface grants only {_GRANTED}")

    def visit_Import(self, node: ast.Import) -> None:
        pass  # checked in collect_imports

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        pass  # checked in collect_imports

    # Statements -------------------------------------------------------------------------------------
    def generic_visit(self, node: ast.AST) -> None:
        for kind, why in _STATEMENTS.items():
            if isinstance(node, kind):
                self.add(node, "statement", why)
                return
        super().generic_visit(node)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        word = "global" if isinstance(node, ast.Global) else "nonlocal"
        self.add(node, "statement", f"`{word} {', '.join(node.names)}` is not allowed; keep state local")

    visit_Nonlocal = visit_Global

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            self.add(decorator, "statement", f"decorators are not allowed (`@{_dotted(decorator)}`)")
        self.check_binding(node, node.name)
        self.visit_arguments_of(node.args)
        if node.returns is not None:
            self.check_annotation(node.returns)
        self.params.append({a.arg for a in self.all_args(node.args)})
        for statement in node.body:
            self.visit(statement)
        self.params.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit_arguments_of(node.args)
        self.params.append({a.arg for a in self.all_args(node.args)})
        self.visit(node.body)
        self.params.pop()

    @staticmethod
    def all_args(args: ast.arguments) -> Iterator[ast.arg]:
        yield from args.posonlyargs + args.args + args.kwonlyargs
        yield from (a for a in (args.vararg, args.kwarg) if a is not None)

    def visit_arguments_of(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        for arg in self.all_args(args):
            if arg.arg != "self":
                self.check_binding(arg, arg.arg)
            if arg.annotation is not None:
                self.check_annotation(arg.annotation)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.check_target(target)
        self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.check_target(node.target)
        self.check_annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name) and self.params and target.id in self.params[-1]:
            self.add(
                node,
                "in-place",
                f"`{target.id} {_op(node.op)}= ...` changes the input tensor in place; "
                f"write `{target.id} = {target.id} {_op(node.op)} ...`",
            )
        else:
            self.check_target(target)
        self.visit(node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.check_target(target, deleting=True)

    def visit_For(self, node: ast.For) -> None:
        self.check_target(node.target)
        for child in [node.iter, *node.body, *node.orelse]:
            self.visit(child)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if node.is_async:
            self.add(node.target, "statement", "async comprehensions are not allowed in a loss")
        self.check_target(node.target)
        for child in [node.iter, *node.ifs]:
            self.visit(child)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.check_target(node.target)
        self.visit(node.value)

    def check_target(self, target: ast.expr, deleting: bool = False) -> None:
        """Stores and deletes may only (re)bind local names; anything else changes an object in place."""
        if isinstance(target, ast.Name):
            self.check_binding(target, target.id)
        elif isinstance(target, (ast.Tuple, ast.List)) and not deleting:
            for element in target.elts:
                self.check_target(element)
        elif isinstance(target, ast.Starred) and not deleting:
            self.check_target(target.value)
        elif isinstance(target, ast.Attribute):
            self.add(
                target,
                "store",
                f"assigning to or deleting an attribute (`{_dotted(target)}`) is not allowed: a loss may "
                "not change modules, tensors or `self`; assign to a local name",
            )
        elif isinstance(target, ast.Subscript):
            self.add(
                target,
                "store",
                f"item assignment (`{_dotted(target)} = ...`) changes a tensor in place; "
                "build a new one, e.g. torch.where(mask, value, x)",
            )
        else:
            self.add(target, "store", f"cannot assign to `{_dotted(target)}`")

    def check_binding(self, node: ast.AST, name: str) -> None:
        if _DUNDER.match(name):
            self.add(node, "dunder", f"dunder name `{name}` is not allowed (interpreter internals)")
        elif name in FORBIDDEN_WORDS:
            self.add(node, "name", f"`{name}` is not allowed (reflection, dynamic code or I/O)")
        elif name in self.aliases or name in ("self", "typing"):
            self.add(node, "store", f"rebinding `{name}` is not allowed; pick another local name")

    # Expressions ------------------------------------------------------------------------------------
    def module_of(self, node: ast.expr) -> str | None:
        """The module `node` names (`torch`, `F`, `torch.nn.functional`, `typing`), or None."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            return "typing" if node.id == "typing" and "typing" in self.annotation_names else None
        if isinstance(node, ast.Attribute):
            parent = self.module_of(node.value)
            if parent is not None and f"{parent}.{node.attr}" in _SUBMODULES:
                return f"{parent}.{node.attr}"
        return None

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_binding(node, name)
        elif name in self.aliases or name == "typing":
            self.add(
                node,
                "module-value",
                f"`{name}` may only be used as `{name}.<operation>` (e.g. {_EXAMPLES['torch'].split(',')[0]}"
                "(x)), not as a value",
            )
        elif name == "self":
            self.add(node, "self", "`self` may only be read as `self.beta`, `self.label_smoothing`, ...")
        elif _DUNDER.match(name):
            self.add(node, "dunder", f"dunder name `{name}` is not allowed (interpreter internals)")
        elif name in FORBIDDEN_WORDS:
            self.add(node, "name", f"`{name}` is not allowed (reflection, dynamic code or I/O)")
        elif name in self.locals or name in BUILTINS:
            return
        elif name in self.annotation_names:
            self.add(node, "annotation", f"`{name}` may only be used in annotations")
        elif hasattr(builtins, name):
            allowed = "abs, min, max, sum, len, range, float, int, round, zip, enumerate, sorted, ..."
            self.add(
                node,
                "name",
                f"`{name}` is not an allowed builtin; a loss may use its parameters, its own local names, "
                f"torch, F, math and the builtins {allowed}",
            )
        # Any other name is bound nowhere: the candidate's globals hold only torch, F and math, so it
        # raises NameError when reached, which the checks report with its line.

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.check_target(node)
            return
        attr = node.attr
        module = self.module_of(node.value)
        if module is not None:
            self.check_module_attribute(node, module, attr)
            return
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            if not _SELF_ATTRIBUTE.match(attr) or attr in FORBIDDEN_WORDS or attr in _AUTOGRAD:
                self.add(node, "self", f"`self.{attr}` is not allowed; read plain values such as self.beta")
            return
        before = len(self.violations)
        self.visit(node.value)
        if len(self.violations) == before:  # one message per chain: its first wrong step
            self.check_value_attribute(node, attr)

    def check_module_attribute(self, node: ast.Attribute, module: str, attr: str) -> None:
        full = f"{module}.{attr}"
        shown = f"{_SHOWN.get(module, module)}.{attr}"
        if full in _SUBMODULES:
            self.add(node, "module-value", f"`{_dotted(node)}` may only be used as `F.<operation>`")
        elif module == "typing" or (module == "torch" and attr in ANNOTATION_TENSOR_TYPES):
            self.add(node, "annotation", f"`{_dotted(node)}` may only be used in annotations")
        elif attr not in _MODULES.get(module, ()):
            self.add(node, "operation", _operation_message(module, attr, shown))

    def check_value_attribute(self, node: ast.Attribute, attr: str) -> None:
        if attr in TENSOR_METHODS or attr in TENSOR_ATTRIBUTES:
            return
        if _DUNDER.match(attr):
            self.add(node, "dunder", f"dunder attribute `.{attr}` is not allowed (interpreter internals)")
        elif attr in _AUTOGRAD:
            self.add(
                node,
                "autograd",
                f"`.{attr}` reaches autograd internals, memory or hooks; a loss only computes with "
                "tensor operations",
            )
        elif attr.endswith("_") and not attr.startswith("_"):
            pure = attr[:-1]
            hint = f"use `.{pure}()`" if pure in TENSOR_METHODS else "compute a new tensor instead"
            self.add(
                node, "in-place", f"`.{attr}()` changes a tensor in place; a loss must not mutate: {hint}"
            )
        elif attr in FORBIDDEN_WORDS:
            self.add(node, "name", f"`.{attr}` is not allowed (reflection, dynamic code or I/O)")
        else:
            self.add(
                node,
                "method",
                f"`.{attr}` is not an allowed tensor method or attribute; use e.g. .exp(), .log(), .mean(), "
                ".sum(), .clamp(), .abs(), .float(), .detach(), .shape",
            )

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "self":
                self.add(
                    func, "self", f"`self.{func.attr}(...)`: a loss may read self's values, not call them"
                )
            else:
                self.visit(func)
        elif isinstance(func, ast.Name):
            self.visit(func)
        else:
            self.visit(func)
            self.add(func, "call", f"call functions by name (`{_dotted(func)}(...)` is not allowed)")
        limit = self.positional_limit(func)
        if limit is not None and len(node.args) > limit:
            self.add(node, "keyword", f"`{_dotted(func)}` takes at most {limit} positional argument"
                     f"{'s' if limit > 1 else ''} here (the next one makes it work in place)")  # fmt: skip
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.add(arg, "call", "`*args` in a call is not allowed; pass arguments one by one")
            self.visit(arg.value if isinstance(arg, ast.Starred) else arg)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.add(keyword.value, "call", "`**kwargs` in a call is not allowed; pass keywords by name")
            elif keyword.arg in ("out", "inplace"):
                self.add(
                    keyword.value,
                    "keyword",
                    f"`{keyword.arg}=` writes into an existing tensor; a loss must not mutate tensors",
                )
            self.visit(keyword.value)

    def positional_limit(self, func: ast.expr) -> int | None:
        if isinstance(func, ast.Attribute) and self.module_of(func.value) == "torch.nn.functional":
            return F_POSITIONAL_LIMIT.get(func.attr)
        return None

    # Annotations ------------------------------------------------------------------------------------
    def check_annotation(self, node: ast.expr) -> None:
        """Annotations are evaluated when the function is defined, so they get a grammar of their own."""
        if not self.is_annotation(node):
            self.add(
                node,
                "annotation",
                f"annotation `{_dotted(node)}` is not allowed; annotate with torch.Tensor, "
                "torch.FloatTensor, float, int, bool or typing names",
            )

    def is_annotation(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            if node.value is None or node.value is Ellipsis:
                return True
            if isinstance(node.value, str):
                try:
                    inner = ast.parse(node.value, mode="eval").body
                except SyntaxError:
                    return False
                return self.is_annotation(inner)
            return False
        if isinstance(node, ast.Name):
            return node.id in ANNOTATION_BUILTINS or (
                node.id in self.annotation_names and node.id != "typing"
            )
        if isinstance(node, ast.Attribute):
            module = self.module_of(node.value)
            if module == "torch":
                return node.attr in ANNOTATION_TENSOR_TYPES
            return module == "typing" and node.attr in TYPING_NAMES
        if isinstance(node, ast.Subscript):
            return self.is_annotation(node.value) and self.is_annotation(node.slice)
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self.is_annotation(e) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.is_annotation(node.left) and self.is_annotation(node.right)
        return False


def _op(op: ast.operator) -> str:
    return ast.unparse(ast.BinOp(left=ast.Name("a"), op=op, right=ast.Name("b")))[2:-2]


def _operation_message(module: str, attr: str, shown: str) -> str:
    if module == "torch" and _RANDOM.match(attr):
        why = "a loss must be deterministic (no random numbers)"
    elif module == "torch" and _STATEFUL.match(attr):
        why = "it changes process-wide state (switches, RNG, autograd)"
    elif attr in ("load", "save", "from_file", "hub", "serialization"):
        why = "it reads or writes files"
    else:
        why = f"a loss may use pure tensor operations such as {_EXAMPLES.get(module, _EXAMPLES['torch'])}"
    return f"`{shown}` is not an allowed operation; {why}"
