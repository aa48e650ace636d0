"""Static checks of a controller source, run on the host before any sandbox sees it, on every path.

One layer of several (the sandbox, the judge and the audit are the others). The rules, each refused with
one line naming the place and what to do instead:

* imports: an allow-list of modules and of the names imported from them; a module name is only ever the
  base of an attribute access (``np.mean``), never a value of its own (no ``T = typing``, no module passed,
  stored or returned), and a module's attributes that are modules stay out (``typing.sys``);
* reflection: no names or attributes that reach objects by name, evaluate strings, walk frames or build
  classes from a mapping (``getattr``, ``type``, ``gi_frame``, ``make_dataclass``, ...), no attribute
  fields in ``str.format`` templates, no class keywords (``metaclass=``) and no special methods beyond the
  ordinary data model (``__array_interface__`` would let numpy read any memory);
* private state: the replay runtime's private names (``_finals``, ...) are reserved everywhere; ``self._x``
  and ``cls._x`` are allowed only for a private attribute the source's own classes define, on a method's
  first parameter that is never rebound; no other private attribute, no dunder attribute but ``__init__``
  and ``__name__``, and nothing assigned to ``__class__``; class patterns (``case C(_x=v)``) read attributes
  and follow the same rules;
* files: no numpy I/O (``np.load``, ``np.fromfile``, ``np.memmap``, ``ndarray.tofile``, ...) and no ctypes
  views (``ndarray.ctypes``);
* size: at most MAX_SOURCE_CHARS characters, nested at most MAX_DEPTH levels (deeper sources, which make the
  parser itself fail, are one clear error too).

It also decides which interpreter can run the source: PyPy when every import is from the standard library
and it parses as Python 3.9.
"""

from __future__ import annotations

import ast
import importlib
import string
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ALLOWED_IMPORTS = frozenset({
    "autotts_runtime", "math", "collections", "itertools", "functools", "heapq", "statistics", "bisect",
    "operator", "dataclasses", "typing", "numpy", "fractions", "__future__",
})
NEEDS_CPYTHON = frozenset({"numpy"})  # PyPy in the box has the standard library only
# Builtins and library names that reach objects by name, evaluate strings, read interpreter state or build
# classes from a mapping (a class namespace with any special method in it): forbidden as any reference, so
# an alias (``g = getattr``) is caught too.
FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "__import__", "input", "breakpoint", "globals", "locals", "vars",
    "getattr", "setattr", "delattr", "memoryview", "help", "exit", "quit", "attrgetter", "methodcaller",
    "get_type_hints", "ForwardRef", "copyright", "credits", "license", "type", "make_dataclass",
})
FORBIDDEN_CALLS = FORBIDDEN_NAMES  # the name older callers use
# Attributes that walk from a generator, coroutine, traceback or function into other frames' variables.
FRAME_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "f_back",
    "f_locals", "f_globals", "f_builtins", "f_code", "f_trace", "tb_frame", "tb_next", "co_code", "co_consts",
    "with_traceback",
})
# numpy's file access (the staged packs are files) and its ctypes views (raw memory at any address).
NUMPY_IO = frozenset({
    "load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile", "fromregex",
    "memmap", "DataSource", "open_memmap", "recfromcsv", "recfromtxt",
})
MEMORY_ATTRIBUTES = frozenset({
    "tofile", "dump", "ctypes", "from_address", "from_buffer", "from_buffer_copy", "in_dll", "data_as",
    "shape_as", "strides_as",
})
FORMAT_METHODS = frozenset({"format", "format_map"})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__"})
ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__slots__"})
# Special methods a class may define: the ordinary data model. Hooks other code calls behind the source's
# back (numpy's __array_interface__, __getattr__, __del__, __init_subclass__, ...) are left out.
ALLOWED_SPECIAL_METHODS = frozenset({
    "__init__", "__post_init__", "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
    "__ge__", "__hash__", "__bool__", "__len__", "__iter__", "__next__", "__reversed__", "__contains__",
    "__getitem__", "__setitem__", "__delitem__", "__call__", "__enter__", "__exit__", "__neg__", "__pos__",
    "__abs__", "__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__pow__",
    "__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rfloordiv__", "__rmod__", "__rpow__", "__iadd__",
    "__isub__", "__imul__", "__itruediv__", "__float__", "__int__", "__round__",
})
RECEIVERS = ("self", "cls")
COST_READOUTS = frozenset({"get_seq_and_total_tokens", "get_cost_per_branch_active"})
MAX_SOURCE_CHARS = 200_000  # what evaluate_controller accepts; CMC, the longest baseline, is 7k
MAX_DEPTH = 200  # levels of syntax nesting (the parser gives up near 3000); controllers stay under 30
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (*_FUNCTIONS, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _runtime_exports() -> frozenset[str]:
    from .runtime import __all__ as exported

    return frozenset(exported)


@cache
def reserved_private_names() -> frozenset[str]:
    """The private names of the replay runtime's classes (slots, ``self._x`` attributes, private methods).

    Read from the runtime's own source, so a name it adds is reserved at once: no controller may read,
    write or define an attribute of that name, on any object.
    """
    names: set[str] = set()
    for path in sorted(RUNTIME_DIR.glob("*.py")):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if isinstance(node, _FUNCTIONS) and node in cls.body:
                    names.add(node.name)
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id in RECEIVERS):
                    names.add(node.attr)
                elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                                          for t in node.targets):
                    names |= {c.value for c in ast.walk(node.value)
                              if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return frozenset(n for n in names if _private(n))


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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dunder(name: str) -> bool:
    return name.startswith("__")


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


def _parse_error(source: str) -> tuple[ast.Module | None, str | None]:
    """(tree, None), or (None, one line saying why the source cannot be checked)."""
    if len(source) > MAX_SOURCE_CHARS:
        return None, (f"the source is {len(source):,} characters; the limit is {MAX_SOURCE_CHARS:,} "
                      "(a controller is one class, normally a few hundred lines)")
    try:
        return parse(source), None
    except SyntaxError as exc:
        return None, f"syntax error at line {exc.lineno}: {exc.msg}"
    except RecursionError:  # the parser's own stack limit
        return None, f"the source is nested too deeply to check (at most {MAX_DEPTH} levels); flatten it"
    except MemoryError:  # deep nesting exhausts the parser's stack too, not only a big tree
        return None, (f"the parser ran out of memory: the source is nested too deeply (at most {MAX_DEPTH} "
                      "levels) or too big to check; flatten or shorten it")
    except ValueError as exc:  # e.g. a null byte in the source
        return None, f"syntax error: {exc}"


def _children(node: ast.AST) -> list[ast.AST]:
    """``ast.iter_child_nodes`` as a list, without its generator overhead (the walk is the checks' hot loop)."""
    out: list[ast.AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, ast.AST))
    return out


class _Scope:
    """One Python scope: what it binds, and its receiver (``self``/``cls``) when it is a method."""

    def __init__(self, node: ast.AST, parent: _Scope | None, receiver: str | None = None) -> None:
        self.node = node
        self.parent = parent
        self.receiver = receiver
        self.bindings: dict[str, list[str]] = {}

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, ast.ClassDef)

    def bind(self, name: str, how: str) -> None:
        self.bindings.setdefault(name, []).append(how)


def _receiver(func: ast.AST, parent: ast.AST | None) -> str | None:
    """``self``/``cls`` when ``func`` is a method (defined in a class body) whose first parameter has that name;
    a staticmethod's first parameter is bound to nothing."""
    if not isinstance(func, _FUNCTIONS) or not isinstance(parent, ast.ClassDef):
        return None
    if any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list):
        return None
    positional = [*func.args.posonlyargs, *func.args.args]
    return positional[0].arg if positional and positional[0].arg in RECEIVERS else None


def _parameters(args: ast.arguments) -> Iterator[str]:
    for a in (*args.posonlyargs, *args.args, *args.kwonlyargs):
        yield a.arg
    for a in (args.vararg, args.kwarg):
        if a is not None:
            yield a.arg


def _format_fields(template: str) -> Iterator[str]:
    """Every replacement field name of a ``str.format`` template, nested ones (in format specs) included."""
    pending = [template]
    while pending:
        for _, name, spec, _ in string.Formatter().parse(pending.pop()):
            if name is not None:
                yield name
            if spec:
                pending.append(spec)


def _slots(node: ast.Assign) -> list[str]:
    """The string constants of a ``__slots__ = ...`` assignment (none for any other assignment)."""
    if not any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
        return []
    return [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)]


class _Checker:
    """Walks one parsed source once for scopes and bindings, then once for the rules."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents: dict[int, ast.AST] = {}
        self.nodes: list[ast.AST] = []  # every node, parents before children
        self.depth = 0
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.exports = _runtime_exports()
        self.modules: dict[str, str] = {}  # local alias -> imported module
        self.imported: set[str] = set()
        self.scope_of: dict[int, _Scope] = {}  # node -> the scope it is evaluated in
        self.scopes: dict[int, _Scope] = {}  # scope node -> its scope
        self.defined: set[str] = set()  # private attributes the source's own classes define

    @property
    def reserved(self) -> frozenset[str]:
        """The runtime's private names, read on first need (most sources use no private name at all)."""
        return reserved_private_names()

    def error(self, node: ast.AST, message: str) -> None:
        self.errors.append(f"line {getattr(node, 'lineno', 0)}: {message}")

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(id(node))

    # -- pass 1: scopes and what they bind ----------------------------------------------------------------
    def index(self) -> None:
        """One walk, without recursion (a deep source is no risk): every node, its parent, its scope and the
        scopes' bindings, and the tree's depth."""
        module = _Scope(self.tree, None)
        self.scopes[id(self.tree)] = module
        stack: list[tuple[ast.AST, _Scope, int]] = [(self.tree, module, 0)]
        while stack:
            node, scope, depth = stack.pop()
            self.nodes.append(node)
            self.depth = max(self.depth, depth)
            self.scope_of[id(node)] = scope
            children = _children(node)[::-1]  # popped in source order: errors come out line by line
            for child in children:
                self.parents[id(child)] = node
            inner = self._open_scope(node, scope) if isinstance(node, _SCOPES) else None
            if inner is None:
                self._bindings(node, scope)
                stack.extend((child, scope, depth + 1) for child in children)
                continue
            # Decorators, defaults, annotations, bases and class keywords are evaluated outside the scope.
            if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
                inside = {id(c) for c in node.body}
            elif isinstance(node, ast.Lambda):
                inside = {id(node.body)}
            else:  # comprehensions
                inside = {id(c) for c in children}
            stack.extend((child, inner if id(child) in inside else scope, depth + 1) for child in children)

    def _open_scope(self, node: ast.AST, outer: _Scope) -> _Scope:
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            outer.bind(node.name, "def")
        inner = _Scope(node, outer, _receiver(node, self.parent(node)))
        self.scopes[id(node)] = inner
        if isinstance(node, (*_FUNCTIONS, ast.Lambda)):
            for name in _parameters(node.args):
                inner.bind(name, "param" if name == inner.receiver and name not in inner.bindings else "bound")
        return inner

    def _bindings(self, node: ast.AST, scope: _Scope) -> None:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            target = scope
            if isinstance(self.parent(node), ast.NamedExpr):  # := binds outside comprehensions (PEP 572)
                while isinstance(target.node, _COMPREHENSIONS) and target.parent is not None:
                    target = target.parent
            target.bind(node.id, "bound")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                scope.bind((alias.asname or alias.name).split(".")[0], "import")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                scope.bind(name, "declared")
        elif isinstance(node, ast.ExceptHandler) and node.name:
            scope.bind(node.name, "bound")
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            scope.bind(node.name, "bound")
        elif isinstance(node, ast.MatchMapping) and node.rest:
            scope.bind(node.rest, "bound")

    def is_receiver(self, node: ast.AST) -> bool:
        """Is ``node`` a method's own ``self``/``cls``: its first parameter, never rebound anywhere?"""
        if not isinstance(node, ast.Name) or node.id not in RECEIVERS:
            return False
        scope: _Scope | None = self.scope_of[id(node)]
        first = True
        while scope is not None:
            if (first or not scope.is_class) and node.id in scope.bindings:
                return scope.receiver == node.id and scope.bindings[node.id] == ["param"]
            first = False
            scope = scope.parent
        return False

    # -- pass 2: the rules --------------------------------------------------------------------------------
    def check(self) -> None:
        nodes = self.nodes
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.check_import(node)
        for node in nodes:  # the private attributes the source's own classes define, before any is read
            if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.ctx, ast.Store) \
                    and self.is_receiver(node.value):
                self.defined.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                self.defined |= {n for n in self.scopes[id(node)].bindings if _private(n)}
            elif isinstance(node, ast.Assign) and isinstance(self.parent(node), ast.ClassDef):
                self.defined |= {n for n in _slots(node) if _private(n)}
        for node in nodes:
            if isinstance(node, ast.Name):
                self.check_name(node)
            elif isinstance(node, ast.Attribute):
                self.check_attribute(node)
            elif isinstance(node, _FUNCTIONS) and _dunder(node.name) and node.name not in ALLOWED_SPECIAL_METHODS:
                self.error(node, f"defining the special method {node.name!r} is not allowed (other code calls it "
                                 "behind the controller's back); use an ordinary method")
            elif isinstance(node, ast.ClassDef) and node.keywords:
                self.error(node, f"class {node.name}: class keywords ({node.keywords[0].arg}=...) are not allowed")
            elif isinstance(node, ast.MatchClass):
                for attr in node.kwd_attrs:
                    self.check_member(node, attr, None, ast.Load(), "class pattern reads attribute")
            elif isinstance(node, (ast.Global, ast.Nonlocal)) and set(node.names) & set(RECEIVERS):
                self.error(node, "declaring self or cls global or nonlocal is not allowed")
            elif isinstance(node, ast.keyword) and node.arg == "refcheck":
                self.error(node, "refcheck= is not allowed (ndarray.resize(refcheck=False) leaves views on freed "
                                 "memory)")
            elif isinstance(node, ast.Assign):
                self.check_slots(node)

    def check_import(self, node: ast.Import | ast.ImportFrom) -> None:
        allowed = ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in ALLOWED_IMPORTS:
                    self.error(node, f"import of {alias.name!r} is not allowed (allowed: {allowed})")
                    continue
                self.modules[alias.asname or alias.name] = alias.name
                self.imported.add(alias.name)
            return
        mod = node.module or ""
        if node.level or mod not in ALLOWED_IMPORTS:
            self.error(node, f"import from {mod or '.'!r} is not allowed (allowed: {allowed})")
            return
        self.imported.add(mod)
        for alias in node.names:
            name = alias.name
            if mod == "autotts_runtime" and name not in self.exports:
                self.error(node, f"autotts_runtime exports {', '.join(sorted(self.exports))}; {name!r} is not one "
                                 "of them")
            elif name == "*" or _private(name) and mod != "__future__" or _dunder(name):
                self.error(node, f"'from {mod} import {name}' is not allowed")
            elif name in FORBIDDEN_NAMES or mod == "numpy" and name in NUMPY_IO:
                self.error(node, f"'from {mod} import {name}' is not allowed in a controller")
            elif mod != "autotts_runtime" and isinstance(_module_attribute(mod, name), types.ModuleType):
                self.error(node, f"{mod}.{name} is a module; import only allowed modules")

    def check_name(self, node: ast.Name) -> None:
        name = node.id
        if name in FORBIDDEN_NAMES:
            self.error(node, f"{name!r} is not allowed in a controller")
        elif _dunder(name) and name not in ALLOWED_DUNDER_NAMES:
            self.error(node, f"the name {name!r} is not allowed in a controller")
        elif name in self.modules:
            parent = self.parent(node)
            if not (isinstance(parent, ast.Attribute) and parent.value is node and isinstance(node.ctx, ast.Load)):
                self.error(node, f"the module {name!r} may only be used as {name}.<name>, never as a value of its "
                                 "own (assigned, passed, stored or rebound)")

    def check_attribute(self, node: ast.Attribute) -> None:
        attr, base = node.attr, node.value
        if isinstance(base, ast.Name) and base.id in self.modules:
            module = self.modules[base.id]
            if not isinstance(node.ctx, ast.Load):
                self.error(node, f"modules are read-only: {base.id}.{attr} cannot be assigned or deleted")
                return
            if module == "autotts_runtime" and attr not in self.exports:
                self.error(node, f"autotts_runtime.{attr} is not part of the contract")
                return
            if module == "numpy" and attr in NUMPY_IO:
                self.error(node, f"numpy.{attr} reads or writes files; a controller has no file access")
                return
            if module != "autotts_runtime" and isinstance(_module_attribute(module, attr), types.ModuleType):
                self.error(node, f"{module}.{attr} is a module; import only allowed modules")
                return
        if attr in FORMAT_METHODS:
            self.check_format(node)
        else:
            self.check_member(node, attr, base, node.ctx, "attribute")
        if attr in COST_READOUTS:
            self.warnings.append(f"line {node.lineno}: {attr}() is for diagnostics; using it to decide when to "
                                 "stop is an oracle the contract forbids")

    def check_member(self, node: ast.AST, attr: str, base: ast.AST | None, ctx: ast.expr_context, what: str) -> None:
        """The rules for reading or writing attribute ``attr`` of ``base`` (None: of an unknown object)."""
        if attr in FORBIDDEN_NAMES or attr in FRAME_ATTRIBUTES:
            self.error(node, f"{what} {attr!r} is not allowed in a controller")
        elif attr in MEMORY_ATTRIBUTES:
            self.error(node, f"{what} {attr!r} is not allowed (file or raw memory access)")
        elif attr == "__class__" and not isinstance(ctx, ast.Load):
            self.error(node, "assigning __class__ is not allowed (it turns an object into another class)")
        elif _dunder(attr) and (attr not in ALLOWED_DUNDERS or not isinstance(ctx, ast.Load)):
            self.error(node, f"dunder {what} {attr!r} is not allowed")
        elif _private(attr):
            if attr in self.reserved:
                self.error(node, f"{attr!r} is the replay runtime's private data (hidden information); no "
                                 "controller may read, write or define it")
            elif base is None or not self.is_receiver(base):
                self.error(node, f"access to private {what} {attr!r} (replay internals are hidden information; "
                                 "only self._name or cls._name of your own class, in its methods, is allowed)")
            elif not isinstance(ctx, ast.Store) and attr not in self.defined:
                self.error(node, f"private attribute {attr!r} is read but never defined by the source's classes "
                                 f"(assign self.{attr} first, or define it in the class body)")

    def check_format(self, node: ast.Attribute) -> None:
        """``str.format``/``format_map`` only on a literal template without attribute or item fields: a field
        like ``{0._finals}`` reads an attribute by name."""
        base = node.value
        if not (isinstance(base, ast.Constant) and isinstance(base.value, str)):
            self.error(node, f".{node.attr}() is allowed only on a string literal (use an f-string)")
            return
        try:
            fields = list(_format_fields(base.value))
        except ValueError:
            return  # a malformed template fails when it runs, reading nothing
        for name in fields:
            if "." in name or "[" in name:
                self.error(node, f"format field {{{name}}} reads an attribute or item by name; use an f-string")

    def check_slots(self, node: ast.Assign) -> None:
        for name in _slots(node):
            if _dunder(name) or name in self.reserved:
                self.error(node, f"__slots__ entry {name!r} is not allowed")


def check_source(source: str) -> StaticReport:
    """Every static rule, plus the interpreter choice."""
    report = StaticReport()
    tree, problem = _parse_error(source)
    if tree is None:
        report.errors.append(problem or "the source cannot be parsed")
        return report
    checker = _Checker(tree)
    checker.index()
    if checker.depth > MAX_DEPTH:
        report.errors.append(f"the source is nested {checker.depth} levels deep; at most {MAX_DEPTH} are "
                             "allowed (flatten it)")
        return report
    checker.check()
    report.errors, report.warnings = checker.errors, checker.warnings
    if not report.errors and not checker.imported & NEEDS_CPYTHON:
        try:
            parse(source, feature_version=(3, 9))
            report.interpreter = "pypy"
        except SyntaxError:
            pass  # newer syntax: CPython runs it
    return report
