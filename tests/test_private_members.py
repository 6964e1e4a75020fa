"""No module uses another module's private members (issue 17): an underscore name is its module's own
business, so renaming or removing it can break nothing elsewhere. Read with `ast` from every module of
the project's packages and the examples: `from a.b import _name` (relative imports too) and `b._name`
where `b` is an imported project module both count; `from a import fail as _fail` (a public name kept
under a private alias) and dunders (`__version__`) do not. The rules run against a small tree first, so
that a check that cannot fail does not pass for nothing."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "tools", "tui", "targets", "memory", "sandbox")
EXAMPLES = "examples"
"""Example packages are imported by their own name (`optimizer_target`), with `examples/` on sys.path."""


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def modules(root: Path) -> dict[str, Path]:
    """Module name → file, for the packages and the example packages under `root`."""
    found: dict[str, Path] = {}
    bases = [(root, root / p) for p in PACKAGES] + [(root / EXAMPLES, root / EXAMPLES)]
    for base, folder in bases:
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts:
                found[".".join(parts)] = path
    return found


def absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an import names, relative ones resolved against `module` (at `path`)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def offences(found: dict[str, Path], root: Path) -> list[str]:
    """`path:line: what` for each use of another project module's private member."""
    bad: list[str] = []
    for module, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        here = path.relative_to(root).as_posix()
        bound: dict[str, str] = {}
        """Local name → the project module it names (`import a.b` binds `a`; `import a.b as x`, `from a
        import b` bind `x`, `b` to `a.b`)."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in found:
                        top = alias.name.split(".")[0]
                        bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom):
                source = absolute(module, path, node)
                for alias in node.names:
                    if f"{source}.{alias.name}" in found:
                        bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                    if private(alias.name) and source in found and source != module:
                        bad.append(f"{here}:{node.lineno}: imports {alias.name} from {source}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                owner = dotted(node.value, bound)
                if owner in found and owner != module:
                    bad.append(f"{here}:{node.lineno}: uses {owner}.{node.attr}")
    return sorted(set(bad))


def dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The module an expression names (`x` bound to a module, or `a.b` under a bound `a`), else None."""
    if isinstance(node, ast.Name):
        return bound.get(node.id) or None
    if isinstance(node, ast.Attribute):
        head = dotted(node.value, bound)
        return f"{head}.{node.attr}" if head else None
    return None


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    files = {
        "agent/__init__.py": "",
        "agent/a.py": "_hidden = 1\nopen_ = 2\n\ndef fail(): ...\n",
        "agent/b.py": "from agent.a import _hidden\nfrom agent.a import fail as _fail, open_\n",
        "agent/c.py": "import agent.a\nimport agent.a as alias\nx = agent.a._hidden + alias._hidden\n",
        "agent/d.py": "from agent import a\nfrom agent import __doc__\ny = a._hidden\nz = a.open_\n",
        "agent/e.py": "class K:\n    _own = 1\n\n    def f(self):\n        return self._own + K._own\n",
        "targets/__init__.py": "",
        "targets/f.py": "def _own(): ...\n\nv = _own()\nimport os\nos._exit\n",
        "examples/pkg/__init__.py": "from ._impl import run\n",
        "examples/pkg/_impl.py": "def run(): ...\n",
        "examples/pkg/user.py": "from .helpers import _private\nfrom . import helpers\nhelpers._private\n",
        "examples/pkg/helpers.py": "_private = 1\n",
    }  # fmt: skip
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert offences(modules(tmp_path), tmp_path) == [
        "agent/b.py:1: imports _hidden from agent.a",
        "agent/c.py:3: uses agent.a._hidden",
        "agent/d.py:3: uses agent.a._hidden",
        "examples/pkg/user.py:1: imports _private from pkg.helpers",
        "examples/pkg/user.py:3: uses pkg.helpers._private",
    ]  # a private module itself (`pkg._impl`), one's own privates and a library's (`os._exit`) are fine


def test_every_package_and_the_example_are_read() -> None:
    found = modules(REPO)
    for top in (*PACKAGES, "optimizer_target"):
        assert len([m for m in found if m.split(".")[0] == top]) >= 4, top


def test_no_module_uses_another_modules_private_members() -> None:
    bad = offences(modules(REPO), REPO)
    listed = "\n".join(bad)
    assert bad == [], f"private members used across modules (make them public, or move them):\n{listed}"
