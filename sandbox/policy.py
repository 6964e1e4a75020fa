"""Static policy for untrusted code: an AST walk that rejects what a pure computation never needs.

Nothing here executes the code. The policy is deliberately strict and syntactic: it forbids the
*spellings* that reach files, processes, the network or the interpreter's internals (imports outside
an allow-list, dunder and private attributes, reflective builtins, known escape hatches such as
`torch.load` or `typing.sys`). A static policy cannot be complete for Python; it is the first, cheap
filter, and hard isolation (no network, limits, a separate process or container) is the sandbox's job.

Self-contained on purpose: it imports nothing from the project, so every target can reuse it with its
own allow-list.
"""

from __future__ import annotations

import ast
import re

from pydantic import BaseModel

FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        # Reflection and dynamic code: each one turns a string into an attribute, a module or code.
        "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
        "getattr", "setattr", "delattr", "breakpoint", "input", "help",
        # Leaving or interrupting the host process instead of returning a result.
        "exit", "quit", "SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException",
    }
)  # fmt: skip
"""Builtins that may not even be *named* (so `f = eval; f(...)` is caught as well as `eval(...)`)."""

FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # torch surfaces that read or write files, compile or load native code, spawn processes, talk
        # to the network or flip process-wide backend switches (torch.backends changes the numerics of
        # everything else running in the host).
        "load", "save", "hub", "utils", "cpp_extension", "ops", "classes", "package", "jit",
        "compile", "compiler", "distributed", "multiprocessing", "backends", "serialization",
        "storage", "from_file", "library", "fx", "export", "onnx", "profiler", "monitor", "cpp",
        # numpy routes from a tensor or from torch.nn.functional (F.np) to files.
        "np", "numpy", "tofile", "fromfile",
        # stdlib modules re-exported as attributes of allowed modules (torch.os, typing.sys, ...).
        "os", "sys", "builtins", "ctypes", "importlib", "inspect", "platform", "signal",
        "threading", "subprocess", "shutil", "socket", "glob", "pathlib", "io", "pickle",
        "marshal", "types", "operator", "functools", "contextlib", "warnings", "gc", "tempfile",
        "urllib", "asyncio", "concurrent", "runpy", "code", "codeop", "linecache", "weakref",
        "system", "popen", "open",
        # typing evaluates string annotations with eval().
        "get_type_hints", "ForwardRef", "evaluate_forward_ref",
        # Frames and code objects: a generator's frame leads to the caller's globals.
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_await", "ag_frame", "ag_await",
        "tb_frame", "tb_next", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace",
        "co_code", "mro",
        # The reflective builtins reached as attributes of a module that re-exports builtins.
        "exec", "getattr", "setattr", "delattr", "globals", "locals", "vars", "breakpoint",
        # Re-exports found by walking the attribute graph of torch, F, math and typing (issue 15):
        # typing.stdlib_re.enum.bltns is `builtins`; torch.overrides hands out sets of torch functions
        # that include torch.load and torch.from_file; the others re-export multiprocessing and codecs.
        "bltns", "stdlib_re", "overrides", "tunable", "profiler_util", "codecs", "copyreg",
        # The autograd graph: from a loss's inputs to the model's parameters.
        "grad_fn", "next_functions",
    }
)  # fmt: skip
"""Attribute names rejected wherever they appear (`x.load`, `from torch import load`, `import torch.hub`)."""

_DUNDER = re.compile(r"^__\w+__$")
_DUNDER_IN_TEXT = re.compile(r"__\w+__")
_FORMAT_FIELD = re.compile(r"\{([^{}!:]*)")
_FIELD_ATTRIBUTE = re.compile(r"\.(\w+)")
MODULE_GLOBALS: frozenset[str] = frozenset({"torch", "F", "np", "math"})
"""Module names that targets hand candidates as globals without an import (an attribute store on one,
like an imported module's, changes it for everything else in the process)."""


class PolicyViolation(BaseModel):
    """One rule broken at one place; `message` names the line so a model can fix it."""

    line: int
    col: int
    rule: str
    """One of: syntax, import, dunder, private-attribute, forbidden-name, forbidden-attribute,
    scope-escape, bare-except, dunder-string, format-string, module-store (the loss policy of
    `targets.dpo.policy` adds its own)."""
    message: str


def check_policy(
    code: str,
    allowed_imports: frozenset[str],
    *,
    forbidden_attributes: frozenset[str] = FORBIDDEN_ATTRIBUTES,
    forbidden_names: frozenset[str] = FORBIDDEN_NAMES,
) -> list[PolicyViolation]:
    """Return every policy violation in `code` (empty when it is clean). Never executes the code.

    A module may be imported when it or one of its parents is in `allowed_imports` (allowing "torch"
    allows "torch.nn.functional"), and no component of its dotted path is a forbidden attribute.
    Unparseable code gives a single `syntax` violation.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        line = exc.lineno or 1
        return [
            PolicyViolation(
                line=line, col=exc.offset or 0, rule="syntax", message=f"line {line}: syntax error: {exc.msg}"
            )
        ]
    walker = _Walker(allowed_imports, forbidden_attributes, forbidden_names)
    walker.modules = _module_names(tree, allowed_imports)
    walker.visit(tree)
    return sorted(walker.violations, key=lambda v: (v.line, v.col))


def _module_names(tree: ast.AST, allowed: frozenset[str]) -> set[str]:
    """Names that refer to a module: what the code's imports bind, allowed modules, provided globals."""
    names = set(MODULE_GLOBALS) | {m.split(".")[0] for m in allowed}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Walker(ast.NodeVisitor):
    def __init__(self, allowed: frozenset[str], attrs: frozenset[str], names: frozenset[str]) -> None:
        self.allowed = allowed
        self.attrs = attrs
        self.names = names
        self.modules: set[str] = set()
        self.violations: list[PolicyViolation] = []

    def add(self, node: ast.AST, rule: str, what: str) -> None:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        self.violations.append(PolicyViolation(line=line, col=col, rule=rule, message=f"line {line}: {what}"))

    # Identifiers -------------------------------------------------------------------------------
    def check_identifier(self, node: ast.AST, name: str | None, kind: str) -> None:
        if name and _DUNDER.match(name):
            self.add(node, "dunder", f"dunder {kind} `{name}` is not allowed (interpreter internals)")

    def check_attribute(self, node: ast.AST, attr: str) -> None:
        if _DUNDER.match(attr):
            self.add(node, "dunder", f"dunder attribute `.{attr}` is not allowed (interpreter internals)")
        elif attr.startswith("_"):
            self.add(
                node, "private-attribute", f"private attribute `.{attr}` is not allowed; use public APIs"
            )
        elif attr in self.attrs:
            self.add(
                node,
                "forbidden-attribute",
                f"attribute `.{attr}` is not allowed (it can reach files, processes, the network or "
                "native code); a loss needs only tensor arithmetic",
            )

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.names:
            self.add(
                node, "forbidden-name", f"`{node.id}` is not allowed (reflection, dynamic code or exiting)"
            )
        else:
            self.check_identifier(node, node.id, "name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_attribute(node, node.attr)
        self.generic_visit(node)
        if isinstance(node.ctx, (ast.Store, ast.Del)) and _root_name(node) in self.modules:
            # `torch.log_softmax = ...` stays set for every later computation in the process.
            self.add(
                node,
                "module-store",
                f"assigning to or deleting `{ast.unparse(node)}` changes a module for everything else "
                "in the process; assign to a local name",
            )

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:  # `case C(attr=x)` reads an attribute by name
            self.check_attribute(node, attr)
        self.generic_visit(node)

    def _visit_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.check_identifier(node, node.name, "definition")
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_def

    def visit_arg(self, node: ast.arg) -> None:
        self.check_identifier(node, node.arg, "parameter")
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self.check_identifier(node, node.arg, "keyword")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        # "{0.__class__}".format(x) reads attributes from a string.
        if not isinstance(node.value, str):
            return
        if _DUNDER_IN_TEXT.search(node.value):
            self.add(node, "dunder-string", "strings containing dunder names are not allowed")
            return
        # "{0.gi_frame.f_back.f_globals}".format(g): the same read without a dunder.
        for field in _FORMAT_FIELD.findall(node.value):
            for attr in _FIELD_ATTRIBUTE.findall(field):
                if attr.startswith("_") or attr in self.attrs:
                    self.add(
                        node, "format-string", f"a format field may not read `.{attr}` (in `{{{field}}}`)"
                    )
                    return

    # Imports -----------------------------------------------------------------------------------
    def check_module(self, node: ast.AST, module: str) -> bool:
        parts = module.split(".")
        if not any(".".join(parts[:i]) in self.allowed for i in range(1, len(parts) + 1)):
            allowed = ", ".join(sorted(self.allowed)) or "none"
            self.add(node, "import", f"importing `{module}` is not allowed; allowed imports: {allowed}")
            return False
        bad = [p for p in parts if p in self.attrs or p.startswith("_")]
        if bad:
            self.add(
                node,
                "forbidden-attribute",
                f"importing `{module}` is not allowed (`{bad[0]}` can reach "
                "files, processes, the network or native code)",
            )
            return False
        return True

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self.check_module(node, alias.name):
                self.check_identifier(node, alias.asname, "name")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, "import", "relative imports are not allowed")
            return
        if not self.check_module(node, node.module or ""):
            return
        for alias in node.names:
            if alias.name == "*":
                self.add(node, "import", f"`from {node.module} import *` is not allowed; name what you use")
                continue
            self.check_attribute(node, alias.name)
            self.check_identifier(node, alias.asname, "name")

    # Scope and control flow --------------------------------------------------------------------
    def visit_Global(self, node: ast.Global) -> None:
        self.add(node, "scope-escape", f"`global {', '.join(node.names)}` is not allowed; keep state local")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.add(node, "scope-escape", f"`nonlocal {', '.join(node.names)}` is not allowed; keep state local")

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.add(
                node,
                "bare-except",
                "a bare `except:` is not allowed (it would swallow time limits); catch a named exception",
            )
        self.check_identifier(node, node.name, "name")
        self.generic_visit(node)
