"""The house's plan, read from the code's imports: `ui/`, `eval/` and the CLI come in through one
door (`rag/__init__.py`), and no module of `rag/` imports, however indirectly, one that imports it.

Imports inside functions count (they are where a cycle hides); those under `if TYPE_CHECKING:`
do not (they never run).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import rag

ROOT = Path(__file__).resolve().parent.parent
# The one white-box module of eval/ (its docstring says why each internal is needed).
MAY_REACH_IN = {"eval/internals.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at the top, in functions, in try blocks; not under
    `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _absolute(node: ast.ImportFrom, module: str, package: bool) -> str:
    """The module a `from ... import` names, made absolute."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _rag_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "rag").rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """For each module of `rag`, the modules of `rag` it imports (at import time or later)."""
    modules = _rag_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(node, name, _is_package(path))
                # `from . import store` imports a module; `from . import Answer` a name of the package.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    # The package's door imports its heavier names on first use (rag.__getattr__).
    graph["rag"] |= {f"rag.{module}" for module in rag._LAZY.values()}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while its imports are being followed, then "done"
    path: list[str] = []

    def follow(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := follow(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := follow(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    # The conversation ↔ assistant cycle this layering removed, as it was.
    graph = {"rag.assistant": {"rag.conversation", "rag.store"}, "rag.conversation": {"rag.assistant"}, "rag.store": set()}
    assert find_cycle(graph) == ["rag.assistant", "rag.conversation", "rag.assistant"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions_and_not_type_checking_ones():
    graph = import_graph()
    assert "rag.indexing" in graph["rag.shards"]  # imported inside write_shard
    assert "rag.conversation" in graph["rag.assistant"]
    assert "rag.assistant" not in graph["rag.conversation"]


def test_no_module_of_rag_imports_itself_through_others():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def _reaching_in(path: Path) -> list[str]:
    """The imports in `path` that name a module inside `rag` (or a name `rag` does not export)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    exported = set(rag.__all__)
    bad = []
    for node in _runtime_imports(tree):
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if isinstance(node, ast.Import):
            bad += [f"{where}: import {a.name}" for a in node.names if a.name.startswith("rag.")]
            continue
        target = _absolute(node, module, _is_package(path))
        if target.startswith("rag."):
            bad.append(f"{where}: from {target} import …")
        elif target == "rag":
            bad += [f"{where}: from rag import {a.name} (not exported)" for a in node.names if a.name not in exported]
    return bad


def test_ui_eval_and_the_cli_come_in_through_the_door():
    checked = [*sorted((ROOT / "ui").rglob("*.py")), *sorted((ROOT / "eval").rglob("*.py")), ROOT / "rag" / "cli.py"]
    assert len(checked) > 20
    bad = [line for path in checked if path.relative_to(ROOT).as_posix() not in MAY_REACH_IN for line in _reaching_in(path)]
    assert not bad, "imports past rag/__init__.py:\n" + "\n".join(bad)


def test_the_door_check_catches_a_module_reached_directly(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "ui").mkdir()
    sneaky = tmp_path / "ui" / "app.py"
    sneaky.write_text("from rag import Answer\n\ndef f():\n    from rag.store import load\n    import rag.text\n"
                      "    from rag import _LAZY\n", encoding="utf-8")
    assert [line.split(": ", 1)[1] for line in _reaching_in(sneaky)] == [
        "from rag.store import …", "import rag.text", "from rag import _LAZY (not exported)",
    ]


def test_every_exported_name_exists():
    for name in rag.__all__:
        assert getattr(rag, name) is not None, name
