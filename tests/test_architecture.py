"""The layers hold: `tui → agent → tools → targets → sandbox`, `memory` beside targets, the CLI
(`agent.cli`, `agent.commands`) on top of everything and imported by nothing, and no module imports
another that imports it back, at import time or inside a function (docs/architecture.md).

Read from the source with `ast`, imports under `if TYPE_CHECKING:` left out (they name types, load
nothing); the checks are run against a small tree of our own first, so that a rule that cannot fail
does not pass for nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "tools", "targets", "sandbox", "memory", "tui")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "tools": ("agent", "tui"),
    "targets": ("agent", "tui", "tools"),
    "memory": ("agent", "tui", "tools"),
    "sandbox": ("agent", "tui", "tools", "targets", "memory"),
    "agent": ("tui",),  # the CLI aside (CLI below)
}
"""Package → what it must not import: a layer sees only the layers below it."""
CLI = ("agent.cli", "agent.commands")


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:`."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports(path: Path) -> set[str]:
    """The absolute module names `path` imports at run time (at the top or in a function)."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project's modules it imports (a name resolves to its longest module prefix)."""

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for module, path in found.items():
        targets = {resolve(n) for n in imports(path)}
        edges[module] = {t for t in targets if t and t != module and not module.startswith(f"{t}.")}
    return edges


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in edges.items():
        in_cli = module.startswith(CLI)
        for target in sorted(targets):
            if target.startswith(CLI) and not in_cli:
                bad.append(f"{module} imports the CLI ({target})")
            package, top = module.split(".")[0], target.split(".")[0]
            if not in_cli and top in FORBIDDEN.get(package, ()):
                bad.append(f"{module} imports {target}: {package} is below {top}")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    files = {
        "agent/__init__.py": "",
        "agent/home.py": "",
        "agent/runner.py": "from agent.commands.memory import open_store\n",
        "agent/commands/__init__.py": "",
        "agent/commands/memory.py": "import tui.app\n",
        "tools/__init__.py": "",
        "tools/toolbox.py": "def f():\n    from agent.home import disco_home\n",
        "targets/__init__.py": "",
        "targets/a.py": "def f():\n    import targets.b\n",
        "targets/b.py": "if TYPE_CHECKING:\n    import agent.runner\nimport targets.a\n",
        "sandbox/__init__.py": "",
        "memory/__init__.py": "",
        "tui/__init__.py": "",
        "tui/app.py": "import agent.runner\n",
    }  # fmt: skip
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    edges = graph(modules(tmp_path))
    assert layer_violations(edges) == [
        "agent.runner imports the CLI (agent.commands.memory)",
        "tools.toolbox imports agent.home: tools is below agent",
    ]  # the CLI may import the UI; a type-only import is no dependency
    loops = sorted(cycles(edges))
    assert loops == [["agent.commands.memory", "agent.runner", "tui.app"], ["targets.a", "targets.b"]]


def test_no_layer_imports_one_above_it() -> None:
    assert layer_violations(graph(modules(REPO))) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(graph(modules(REPO))) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_read(package: str) -> None:
    """The checks see the whole tree (a package the walk missed would pass every rule)."""
    assert len([m for m in modules(REPO) if m.split(".")[0] == package]) >= 5


def test_every_name_imported_from_the_project_exists() -> None:
    """`from pkg.mod import name` everywhere (tests, evals and examples too, lazy imports included) names
    something `pkg.mod` has: a rename that missed a caller fails here, not in the one run that reaches it."""
    import importlib
    import importlib.util
    import sys

    sys.path[:0] = [str(REPO / "tests"), str(REPO / "evals")]
    wanted: dict[str, set[tuple[str, str]]] = {}
    for folder in (*PACKAGES, "tests", "evals", "examples", "tests_llm"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                ours = isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                if ours and node.module.split(".")[0] in PACKAGES:
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    wanted.setdefault(node.module, set()).update((a.name, where) for a in node.names)
    missing = []
    for module, names in sorted(wanted.items()):
        loaded = importlib.import_module(module)
        for name, where in sorted(names):
            package = hasattr(loaded, "__path__")
            if not hasattr(loaded, name) and not (package and importlib.util.find_spec(f"{module}.{name}")):
                missing.append(f"{where}: {module} has no {name}")
    assert len(wanted) > 100 and missing == []


TARGET_PACKAGE = re.compile(r"\btargets\.(dpo|agents)\b")


def names_of_targets(path: Path) -> list[str]:
    """Where `path` names a target's package: an import (type-only ones too) or a string that code uses
    (a `module:function` to call; a docstring or a bare string statement aside), and the issue's own
    `grep "targets.dpo"` over the text, comments included."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings, bare strings
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            names = [node.value]
        else:
            continue
        found += [f"{path.name}:{node.lineno}" for name in names if TARGET_PACKAGE.search(name)]
    lines = enumerate(text.splitlines(), 1)
    return sorted({*found, *(f"{path.name}:{i}" for i, line in lines if re.search("targets.dpo", line))})


def test_the_agent_names_no_target(tmp_path: Path) -> None:
    """The agent is target-agnostic (issue 17.4): a target's commands and fingerprint reach the CLI through
    the registry (targets/commands.py), so no module under agent/ names `targets.dpo` or `targets.agents`."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstring: a fingerprint like targets.agents.cotsc\'s."""\n'
        "from targets.dpo.zoo import list_zoo\n"
        "def f():\n    import targets.agents.target\n"
        'CALL = f"targets.dpo.fingerprint:{1}"\n'
        "# see targets/dpo\n"
        '"""targets.agents, in a bare string."""\n',
        encoding="utf-8",
    )
    assert names_of_targets(sample) == ["sample.py:2", "sample.py:4", "sample.py:5", "sample.py:6"]
    found = [hit for path in sorted((REPO / "agent").rglob("*.py")) for hit in names_of_targets(path)]
    assert found == []
