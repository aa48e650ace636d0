"""Static checks of a controller source, run on the host before any sandbox sees it, on every path.

One layer of several (the sandbox, the judge and the audit are the others): an allow-list of imports and
of the names imported from them, no module reached through another module's attributes, no reflection
or frame-walking names, no dunder or private attributes. It also decides which interpreter can run the
source: PyPy when every import is from the standard library and it parses as Python 3.9.
"""

from __future__ import annotations

import ast
import importlib
import threading
import types
from dataclasses import dataclass, field

ALLOWED_IMPORTS = frozenset({
    "autotts_runtime", "math", "collections", "itertools", "functools", "heapq", "statistics", "bisect",
    "operator", "dataclasses", "typing", "numpy", "enum", "fractions", "__future__",
})
NEEDS_CPYTHON = frozenset({"numpy"})  # PyPy in the box has the standard library only
# Builtins and library names that reach objects by name, evaluate strings, or read interpreter state:
# forbidden as any reference, so an alias (``g = getattr``) is caught too.
FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "globals", "locals", "vars",
    "getattr", "setattr", "delattr", "memoryview", "help", "exit", "quit", "attrgetter", "methodcaller",
    "get_type_hints", "ForwardRef", "copyright", "credits", "license",
})
FORBIDDEN_CALLS = FORBIDDEN_NAMES  # the name older callers use
# Attributes that walk from a generator, coroutine, traceback or function into other frames' variables.
FRAME_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "f_back",
    "f_locals", "f_globals", "f_builtins", "f_code", "f_trace", "tb_frame", "tb_next", "co_code", "co_consts",
    "with_traceback",
})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__class__"})
ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__slots__"})
COST_READOUTS = frozenset({"get_seq_and_total_tokens", "get_cost_per_branch_active"})


def _runtime_exports() -> frozenset[str]:
    from .runtime import __all__ as exported

    return frozenset(exported)


@dataclass
class StaticReport:
    """Errors block the source everywhere; warnings are advice. ``interpreter`` is where it can run."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interpreter: str = "cpython"


def _module_attribute(module: str, name: str) -> object | None:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None

# CPython 3.11 keeps the AST converter's recursion depth in one per-interpreter counter, so a conversion in
# another thread makes ours fail with a spurious "SystemError: AST constructor recursion depth mismatch"
# (python/cpython gh-106905). Our own parses take turns under the lock; a parse elsewhere (the traceback
# module parses source lines when it formats an error for a log) can still collide, and each conversion
# resets the counter, so the parse is simply repeated.
_PARSE_LOCK = threading.Lock()
_PARSE_ATTEMPTS = 5


def parse(source: str, **kwargs: object) -> ast.Module:
    """``ast.parse`` that is safe to call from several threads (SyntaxError as usual)."""
    with _PARSE_LOCK:
        for _ in range(_PARSE_ATTEMPTS - 1):
            try:
                return ast.parse(source, **kwargs)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc):
                    raise
        return ast.parse(source, **kwargs)


def check_source(source: str) -> StaticReport:
    """Every static rule, plus the interpreter choice."""
    report = StaticReport()
    try:
        tree = parse(source)
    except SyntaxError as exc:
        report.errors.append(f"syntax error at line {exc.lineno}: {exc.msg}")
        return report
    errors, warnings = report.errors, report.warnings
    exports = _runtime_exports()
    modules: dict[str, str] = {}  # local alias -> imported module
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in ALLOWED_IMPORTS:
                    errors.append(f"line {node.lineno}: import of {alias.name!r} is not allowed "
                                  f"(allowed: {', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
                    continue
                modules[alias.asname or alias.name] = alias.name
                imported.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level or mod not in ALLOWED_IMPORTS:
                errors.append(f"line {node.lineno}: import from {mod or '.'!r} is not allowed "
                              f"(allowed: {', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))})")
                continue
            imported.add(mod)
            for alias in node.names:
                name = alias.name
                if mod == "autotts_runtime" and name not in exports:
                    errors.append(f"line {node.lineno}: autotts_runtime exports {', '.join(sorted(exports))}; "
                                  f"{name!r} is not one of them")
                elif name == "*" or name.startswith("_") and mod != "__future__":
                    errors.append(f"line {node.lineno}: 'from {mod} import {name}' is not allowed")
                elif mod != "autotts_runtime" and isinstance(_module_attribute(mod, name), types.ModuleType):
                    errors.append(f"line {node.lineno}: {mod}.{name} is a module; import only allowed modules")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                errors.append(f"line {node.lineno}: {node.id!r} is not allowed in a controller")
            elif node.id.startswith("__") and node.id not in ALLOWED_DUNDER_NAMES:
                errors.append(f"line {node.lineno}: the name {node.id!r} is not allowed in a controller")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr in FORBIDDEN_NAMES or attr in FRAME_ATTRIBUTES:
                errors.append(f"line {node.lineno}: attribute {attr!r} is not allowed in a controller")
            elif attr.startswith("__") and attr not in ALLOWED_DUNDERS:
                errors.append(f"line {node.lineno}: dunder attribute {attr!r} is not allowed")
            elif attr.startswith("_") and not attr.startswith("__") and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                errors.append(f"line {node.lineno}: access to private attribute {attr!r} (replay internals "
                              "are hidden information)")
            elif isinstance(node.value, ast.Name) and node.value.id in modules:
                module = modules[node.value.id]
                if module == "autotts_runtime" and attr not in exports:
                    errors.append(f"line {node.lineno}: autotts_runtime.{attr} is not part of the contract")
                elif module != "autotts_runtime" and isinstance(_module_attribute(module, attr), types.ModuleType):
                    errors.append(f"line {node.lineno}: {module}.{attr} is a module; import only allowed modules")
            if attr in COST_READOUTS:
                warnings.append(f"line {node.lineno}: {attr}() is for diagnostics; using it to decide when to "
                                "stop is an oracle the contract forbids")
    if not errors and not imported & NEEDS_CPYTHON:
        try:
            parse(source, feature_version=(3, 9))
            report.interpreter = "pypy"
        except SyntaxError:
            pass  # newer syntax: CPython runs it
    return report
