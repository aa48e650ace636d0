"""The static checks' bypass catalogue: controller sources that reach hidden data or forbidden capabilities.

Each ``Bypass`` is a complete controller. A *leak* defines ``hidden_finals(question)``, which returns the
question's shuffled final answers (data the controller never observed) and feeds the oracle below; the
others define ``capability()``, which returns what the controller should never get (a module, raw memory).
``tests/sandbox/test_static_bypasses.py`` shows each one works when nothing checks it, and that the static
checks refuse it with a one-line error; ``test_reward_hacks.py`` runs them through the judged path.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD = "from autotts_runtime import Controller, majority, safe_probe_new, safe_full_read\n"

# Reads every branch's final answer from data it never observed, then opens branches until that answer
# shows up, so the answer it returns is one it "observed": only the audit can tell.
ORACLE_TAIL = '''
class Oracle(Controller):
    def solve(self, question):
        self.trace.record("start")
        finals = hidden_finals(question)
        target = majority(finals)
        seen = []
        while True:
            got = safe_probe_new(question)
            if got is None:
                break
            seen.append(got[0])
            if got[0] == target:
                break
        self.trace.record("finish")
        return target if target in seen else majority(seen)
'''

# An attack no static rule can see: it remembers each question's answer across seeds (keyed by its first
# probe). Only the audit can tell (test_reward_hacks.py, and the tool server's cheater in test_server_cli.py).
MEMO = HEAD + '''
MEMORY = {}
class Memo(Controller):
    def solve(self, question):
        self.trace.record("start")
        first = safe_probe_new(question)
        key = first[0]
        if key not in MEMORY:
            answers = [first[0]]
            for _ in range(6):
                got = safe_full_read(question)
                if got is not None:
                    answers.append(got)
            MEMORY[key] = majority(answers)
            self.trace.record("finish")
            return MEMORY[key]
        seen = [first[0]]
        while MEMORY[key] not in seen:
            got = safe_probe_new(question)
            if got is None:
                break
            seen.append(got[0])
        self.trace.record("finish")
        return MEMORY[key] if MEMORY[key] in seen else majority(seen)
'''

PLAIN_TAIL = '''
class Plain(Controller):
    def solve(self, question):
        self.trace.record("start")
        self.trace.record("finish")
        return safe_full_read(question)
'''


@dataclass(frozen=True)
class Bypass:
    """One attack: its class (the rule that must refuse it), a name, the source, a fragment of the error."""

    kind: str
    name: str
    body: str
    fragment: str
    leak: bool = True  # defines hidden_finals (else capability)

    @property
    def source(self) -> str:
        return HEAD + self.body + (ORACLE_TAIL if self.leak else PLAIN_TAIL)


ALIAS = "may only be used as"
PRIVATE = "private"
RESERVED = "replay runtime's private data"

BYPASSES: list[Bypass] = [
    # -- a module reached through an alias ---------------------------------------------------------------
    Bypass("alias", "assigned to a name", '''import typing
T = typing
def capability():
    return T.sys
''', ALIAS, leak=False),
    Bypass("alias", "numpy assigned to a name", '''import numpy as np
N = np
def capability():
    return N.ctypeslib
''', ALIAS, leak=False),
    Bypass("alias", "passed to a function", '''import typing
def via(module):
    return module.sys
def capability():
    return via(typing)
''', ALIAS, leak=False),
    Bypass("alias", "stored in a container", '''import typing
MODULES = [typing]
def capability():
    return MODULES[0].sys
''', ALIAS, leak=False),
    Bypass("alias", "a dict value", '''import typing
def capability():
    return {"m": typing}["m"].sys
''', ALIAS, leak=False),
    Bypass("alias", "returned by a function", '''import typing
def module():
    return typing
def capability():
    return module().sys
''', ALIAS, leak=False),
    Bypass("alias", "a default argument", '''import typing
def capability(m=typing):
    return m.sys
''', ALIAS, leak=False),
    Bypass("alias", "a walrus", '''import typing
def capability():
    return (m := typing).sys
''', ALIAS, leak=False),
    Bypass("alias", "a lambda", '''import typing
def capability():
    return (lambda: typing)().sys
''', ALIAS, leak=False),
    Bypass("alias", "a conditional expression", '''import typing
def capability():
    return (typing if True else None).sys
''', ALIAS, leak=False),
    Bypass("alias", "a loop target", '''import typing
def capability():
    for m in (typing,):
        return m.sys
''', ALIAS, leak=False),
    Bypass("alias", "a star argument", '''import typing
def via(*modules):
    return modules[0].sys
def capability():
    return via(*[typing])
''', ALIAS, leak=False),
    Bypass("alias", "self bound to a module", '''import collections
self = collections
def capability():
    return self._sys
''', ALIAS, leak=False),
    Bypass("alias", "a module attribute that is a module", '''import dataclasses
def capability():
    return dataclasses.sys
''', "is a module", leak=False),
    # -- the self/cls exemption: the replay runtime's private names, on any object -----------------------
    Bypass("receiver", "a module-level function whose parameter is named self", '''
def hidden_finals(self):
    return list(self._finals)
''', RESERVED),
    Bypass("receiver", "a helper class method called on the question", '''
class Peek:
    def finals(self):
        return list(self._finals)
def hidden_finals(question):
    return Peek.finals(question)
''', RESERVED),
    Bypass("receiver", "the question's class swapped for one that reads its slots", '''
def hidden_finals(question):
    class Q(question.__class__):
        __slots__ = ()
        def finals(self):
            return list(self._finals)
    original = question.__class__
    question.__class__ = Q
    try:
        return question.finals()
    finally:
        question.__class__ = original
''', "__class__"),
    Bypass("receiver", "a reserved name defined to look like the controller's own", '''
class Peek:
    def __init__(self):
        self._finals = []
    def finals(self):
        return list(self._finals)
def hidden_finals(question):
    return Peek.finals(question)
''', RESERVED),
    Bypass("receiver", "a reserved name in __slots__", '''
class Peek:
    __slots__ = ("_finals",)
    def finals(self):
        return list(self._finals)
def hidden_finals(question):
    return Peek.finals(question)
''', "__slots__"),
    # -- the self/cls exemption: a foreign object's private attribute through a "self" that is not one ----
    # Own defines _numerator, so only the receiver rule stands between the source and Fraction._numerator.
    *[Bypass("receiver", name, '''import fractions
class Own:
    def __init__(self):
        self._numerator = 0
''' + body, "only self._name or cls._name", leak=False) for name, body in (
        ("a module-level function whose parameter is named self", '''
def peek(self):
    return self._numerator
def capability():
    return peek(fractions.Fraction(1, 3))
'''),
        ("a staticmethod whose parameter is named self", '''
class Peek:
    @staticmethod
    def numerator(self):
        return self._numerator
def capability():
    return Peek.numerator(fractions.Fraction(1, 3))
'''),
        ("self rebound inside a method", '''
class Peek:
    def numerator(self, other):
        self = other
        return self._numerator
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
        ("a lambda whose parameter is named self", '''
def capability():
    return (lambda self: self._numerator)(fractions.Fraction(1, 3))
'''),
        ("a comprehension target named self", '''
def capability():
    return [self._numerator for self in [fractions.Fraction(1, 3)]][0]
'''),
        ("a walrus named self inside a method", '''
class Peek:
    def numerator(self, other):
        return (self := other)._numerator
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
        ("a nested function whose parameter is named self", '''
class Peek:
    def numerator(self, other):
        def inner(self):
            return self._numerator
        return inner(other)
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
        ("a loop target named self inside a method", '''
class Peek:
    def numerator(self, other):
        for self in [other]:
            return self._numerator
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
        ("a capture pattern named self", '''
class Peek:
    def numerator(self, other):
        match other:
            case self:
                return self._numerator
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
        ("self deleted and bound again", '''
class Peek:
    def numerator(self, other):
        del self
        self = other
        return self._numerator
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
        ("self bound in a class body", '''
class Peek:
    self = fractions.Fraction(1, 3)
    value = self._numerator
def capability():
    return Peek.value
'''),
        ("cls of a module-level function", '''
def peek(cls):
    return cls._numerator
def capability():
    return peek(fractions.Fraction(1, 3))
'''),
        ("a private attribute of another instance", '''
class Peek:
    def numerator(self, other):
        return other._numerator
def capability():
    return Peek().numerator(fractions.Fraction(1, 3))
'''),
    )],
    Bypass("receiver", "self declared global", '''import fractions
class Own:
    def __init__(self):
        self._numerator = 0
def capability():
    global self
    self = fractions.Fraction(1, 3)
    return self._numerator
''', "global", leak=False),
    Bypass("receiver", "self declared nonlocal", '''import fractions
class Own:
    def __init__(self):
        self._numerator = 0
    def numerator(self, other):
        def rebind():
            nonlocal self
            self = other
        rebind()
        return self._numerator
def capability():
    return Own().numerator(fractions.Fraction(1, 3))
''', "nonlocal", leak=False),
    Bypass("receiver", "a private attribute the source never defines", '''import fractions
class Peek:
    def numerator(self):
        return self._numerator
def capability():
    return Peek.numerator(fractions.Fraction(1, 3))
''', "never defined", leak=False),
    # -- class patterns -------------------------------------------------------------------------------------
    Bypass("pattern", "a keyword class pattern", '''
def hidden_finals(question):
    match question:
        case object(_finals=finals):
            return list(finals)
''', RESERVED),
    Bypass("pattern", "a dunder in a class pattern", '''import fractions
def capability():
    match fractions.Fraction(1, 3):
        case object(__class__=kind):
            return kind
''', "dunder", leak=False),
    # -- str.format attribute fields --------------------------------------------------------------------------
    Bypass("format", "an attribute field", '''
def hidden_finals(question):
    text = "{0._finals}".format(question)
    return [s.strip(" '") for s in text.strip("[]").split(",")]
''', "format field"),
    Bypass("format", "format_map with an attribute field", '''
def hidden_finals(question):
    text = "{q._finals}".format_map({"q": question})
    return [s.strip(" '") for s in text.strip("[]").split(",")]
''', "format field"),
    Bypass("format", "a field nested in a format spec", '''import fractions
def capability():
    return len("{0:{1._numerator}}".format("", fractions.Fraction(7, 3)))
''', "format field", leak=False),
    Bypass("format", "a template built at run time", '''
def hidden_finals(question):
    text = ("{0." + "_finals}").format(question)
    return [s.strip(" '") for s in text.strip("[]").split(",")]
''', "string literal"),
    Bypass("format", "str.format called on the class", '''
def hidden_finals(question):
    text = str.format("{0._finals}", question)
    return [s.strip(" '") for s in text.strip("[]").split(",")]
''', "string literal"),
    # -- files through numpy -----------------------------------------------------------------------------
    *[Bypass("numpy I/O", f"numpy.{call.split('(')[0]}", f'''import numpy as np
def capability():
    return np.{call}
''', "files", leak=False) for call in (
        'load("/packs/0.npz")', 'fromfile("/packs/0.npz", dtype=np.uint8)', 'memmap("/packs/0.npz", mode="r")',
        'loadtxt("/packs/0.npz")', 'genfromtxt("/packs/0.npz")', 'fromregex("/packs/0.npz", "x", [("a", "u1")])',
        'save("/tmp/x.npy", [1])', 'savez("/tmp/x.npz", a=[1])', 'savez_compressed("/tmp/x.npz", a=[1])',
        'savetxt("/tmp/x.txt", [1])')],
    Bypass("numpy I/O", "from numpy import load", '''from numpy import load
def capability():
    return load("/packs/0.npz")
''', "not allowed", leak=False),
    Bypass("numpy I/O", "ndarray.tofile", '''import numpy as np
def capability():
    np.zeros(2).tofile("/tmp/x.bin")
    return "/tmp/x.bin"
''', "file or raw memory", leak=False),
    Bypass("numpy I/O", "ndarray.dump", '''import numpy as np
def capability():
    return np.zeros(2).dump("/tmp/x.pkl")
''', "file or raw memory", leak=False),
    Bypass("numpy I/O", "numpy.lib", '''import numpy as np
def capability():
    return np.lib.format.open_memmap("/packs/0.npz", mode="r")
''', "is a module", leak=False),
    Bypass("numpy I/O", "an alias of numpy.load", '''import numpy as np
LOAD = np.load
def capability():
    return LOAD("/packs/0.npz")
''', "files", leak=False),
    # -- raw memory ----------------------------------------------------------------------------------------
    Bypass("memory", "ndarray.ctypes and from_address", '''import numpy as np
def capability():
    probe = np.zeros(1).ctypes.shape
    return type(probe).from_address(id(probe))
''', "file or raw memory", leak=False),
    Bypass("memory", "a property named __array_interface__", '''import numpy as np
SECRET = "secret bytes in the box"
class View:
    @property
    def __array_interface__(self):
        return {"data": (id(SECRET), True), "shape": (len(SECRET) + 64,), "typestr": "|u1", "version": 3}
def capability():
    return bytes(np.asarray(View()))
''', "special method", leak=False),
    Bypass("memory", "a class built by type() from a mapping", '''import numpy as np
SECRET = "secret bytes in the box"
def capability():
    view = {"data": (id(SECRET), True), "shape": (len(SECRET) + 64,), "typestr": "|u1", "version": 3}
    return bytes(np.asarray(type("View", (), {"__array_interface__": view})()))
''', "'type'", leak=False),
    Bypass("memory", "a class built by make_dataclass from a mapping", '''import dataclasses
import numpy as np
SECRET = "secret bytes in the box"
def capability():
    view = {"data": (id(SECRET), True), "shape": (len(SECRET) + 64,), "typestr": "|u1", "version": 3}
    cls = dataclasses.make_dataclass("View", [], namespace={"__array_interface__": view})
    return bytes(np.asarray(cls()))
''', "make_dataclass", leak=False),
    Bypass("memory", "a metaclass reached through __class__", '''import numpy as np
SECRET = "secret bytes in the box"
def capability():
    view = {"data": (id(SECRET), True), "shape": (len(SECRET) + 64,), "typestr": "|u1", "version": 3}
    meta = Controller.__class__
    return bytes(np.asarray(meta("View", (), {"__array_interface__": view})()))
''', "dunder", leak=False),
    Bypass("memory", "a class keyword", '''
class Meta:
    pass
class View(metaclass=Meta):
    pass
def capability():
    return View
''', "class keywords", leak=False),
    Bypass("memory", "resize without the reference check", '''import numpy as np
def capability():
    a = np.zeros(8)
    view = a[:]
    a.resize(10 ** 6, refcheck=False)
    return view
''', "refcheck", leak=False),
    Bypass("memory", "the enum functional API", '''import enum
def capability():
    return enum.Enum("E", {"A": 1})
''', "not allowed", leak=False),
]

# Honest patterns the rules must keep working: a controller's own private state and ordinary Python.
HONEST = HEAD + '''import dataclasses
import functools
import math

import numpy as np

_SCALE = 2.0


def _score(values):
    return sum(values) / max(1, len(values))


@dataclasses.dataclass
class _Stats:
    count: int = 0

    def __lt__(self, other):
        return self.count < other.count


class _Branch:
    __slots__ = ("_index", "answer")

    def __init__(self, index, answer):
        self._index = index
        self.answer = answer

    def index(self):
        return self._index

    def __repr__(self):
        return "{}:{!r}".format(self._index, self.answer)


class Honest(Controller):
    NAME = "honest"
    _LIMIT = 64

    def __init__(self, config=None):
        super().__init__(config)
        self._cache = {}

    @classmethod
    def limit(cls):
        return cls._LIMIT

    @functools.lru_cache(maxsize=None)
    def _width(self, beta):
        return max(1, round(math.log2(2 + 14 * beta)))

    def schedule(self, beta):
        return {"width": 2 + round(6 * beta)}

    def solve(self, question):
        self.trace.record("start")
        self._cache.clear()
        branches = []

        def remember(step):
            self._cache[step[1]] = step[0]
            branches.append(_Branch(step[1], step[0]))

        for _ in range(min(self.params["width"], self.limit())):
            step = safe_probe_new(question)
            if step is None:
                break
            remember(step)
        match branches:
            case [first, *_]:
                label = f"{first!r} {first.index()} {_Stats(len(branches)).count} {np.mean([1.0]) * _SCALE:.1f}"
            case _:
                label = "none"
        self.trace.record("finish", output={"label": label, "score": _score([1, 2])})
        return majority([b.answer for b in branches]) if branches else None
'''
