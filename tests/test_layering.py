"""The package's layering, read from every module's imports with ``ast`` (function-level imports included):

* the replay runtime (``sandbox/runtime/``, copied into the sandbox as ``autotts_runtime``) imports only the
  standard library, numpy and itself;
* sandbox <- store <- tools <- graph <- ui <- cli: a module imports from its own layer and the layers to its
  left, never from one to its right;
* the run browser (``ui/`` and ``autotts-graph ui``) never imports LangGraph or LangChain.

"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "autotts_graph"
ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("sandbox", "store", "tools", "graph", "ui", "cli")
RUNTIME = ROOT / "sandbox" / "runtime"
RUNTIME_THIRD_PARTY = frozenset({"numpy"})



def _modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def _package_of(path: Path) -> list[str]:
    """The dotted package a module lives in, e.g. ['autotts_graph', 'graph', 'agents']."""
    return [PACKAGE, *path.relative_to(ROOT).parent.parts]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module; relative imports are resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path)[: len(_package_of(path)) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                # ``from . import x`` may import a submodule x: record it, not just the package.
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names] if not node.module else \
                    [(node.lineno, module)]
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == PACKAGE and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def upward_imports() -> set[tuple[str, str]]:
    """(module file, imported module) for every import from a layer to the right of the module's own."""
    found = set()
    for path in _modules():
        own = LAYERS.index(path.relative_to(ROOT).parts[0])
        for _, module in imports(path):
            layer = _layer(module)
            if layer is not None and layer > own:
                found.add((path.relative_to(ROOT).as_posix(), module))
    return found


def test_the_runtime_imports_only_the_standard_library_and_numpy():
    runtime_pkg = f"{PACKAGE}.sandbox.runtime"
    bad = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for line, module in imports(path):
            top = module.split(".")[0]
            if module == runtime_pkg or module.startswith(runtime_pkg + "."):
                continue  # itself
            if top in sys.stdlib_module_names or top in RUNTIME_THIRD_PARTY:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert len(list(RUNTIME.rglob("*.py"))) >= 5
    assert not bad, "the runtime must run on the standard library and numpy alone:\n" + "\n".join(bad)


def test_no_layer_imports_from_a_layer_above_it():
    found = sorted(upward_imports())
    assert not found, ("upward imports (sandbox <- store <- tools <- graph <- ui <- cli):\n"
                       + "\n".join(f"{path} imports {module}" for path, module in found))


def test_the_import_reader_sees_what_the_rules_need(tmp_path):
    """The reader resolves relative imports and finds imports inside functions (so the checks can fail)."""
    module = ROOT / "tools" / "registry.py"
    found = {m for _, m in imports(module)}
    assert "autotts_graph.tools.context" in found and "autotts_graph.store.db" in found
    nested = ROOT / "graph" / "agents" / "prompting.py"
    assert "autotts_graph.tools.contract" in {m for _, m in imports(nested)}  # imported inside contract_at
    assert _layer("autotts_graph.cli.main") == 5 and _layer("autotts_graph.ui.app") == 4 and _layer("numpy") is None


def test_the_run_browser_imports_no_agent_framework():
    """Starting `autotts-graph ui` (the command, the app and every page's view) loads no LangGraph or LangChain."""
    import subprocess

    code = ("import sys, autotts_graph.cli.ui_cmd, autotts_graph.ui.app, autotts_graph.ui.pages; "
            "from autotts_graph.graph import run_view; "
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('langgraph', 'langchain'))}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
