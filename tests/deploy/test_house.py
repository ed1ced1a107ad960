"""The shape of src/ (docs/ARCHITECTURE.md): what ships never imports the development sandbox,
no import cycle between modules (imports inside functions count), and no module name twice."""
from __future__ import annotations

import ast
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_nothing_under_src_imports_the_sandbox_and_the_wheel_leaves_it_out():
    importers = [name for name, path in _modules().items()
                 if any(i == "sandbox" or i.startswith("sandbox.") for i in _imports(path))]
    assert importers == []
    packaged = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert packaged["where"] == ["src"] and not any(p.startswith("sandbox") for p in packaged["include"])


def test_no_import_cycle_between_modules_of_src():
    modules = _modules()
    graph = {name: {i for i in _imports(path) if i in modules and i != name and not name.startswith(i + ".")}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = cycle_from(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            assert cycle_from(name, [name]) is None


def test_no_two_modules_share_a_name():
    names = Counter(p.stem for p in SRC.rglob("*.py") if p.stem != "__init__")
    assert [n for n, count in names.items() if count > 1] == []
