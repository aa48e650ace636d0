"""Optional canonicalisation of answers when an environment is built from the raw collected answers.

The shipped replay data compares answers by exact string equality, so the default (``none``) keeps
the raw extracted strings. ``norm`` rewrites every answer (and the gold) to a light textual normal
form so that spellings of the same value vote together; ``gold`` asks Hugging Face ``math-verify``
whether an answer equals the gold and, if so, replaces it by the gold string. Raw strings stay in
the collector's tables either way, so an environment can be rebuilt with another mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .backend import CollectError
from .extract import ERR
from .spec import Canonicalize

_DROP = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", "$")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\{?\\circ\}?")


class CanonicalizeError(CollectError):
    """Canonicalisation cannot run (missing optional dependency)."""


def normalize_answer(answer: str) -> str:
    """A light textual normal form: spacing, ``\\left``/``\\right``, ``\\dfrac``, degrees, ``\\text{}``."""
    if answer == ERR:
        return ERR
    s = answer.strip()
    for token in _DROP:
        s = s.replace(token, "")
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    s = _TEXT_WRAP.sub(r"\1", s)
    s = _DEGREES.sub("", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s or ERR


class Canonicalizer:
    """Maps (gold, answer) to the stored answer string for one mode, caching every verdict."""

    def __init__(self, mode: Canonicalize, verify: Callable[[str, str], bool] | None = None) -> None:
        self.mode = mode
        self._cache: dict[tuple[str, str], str] = {}
        self._verify = verify
        if mode == "gold" and verify is None:
            self._verify = _math_verify()

    def gold(self, gold: str) -> str:
        """The gold answer as stored in the environment."""
        return normalize_answer(gold) if self.mode == "norm" else gold

    def answer(self, gold: str, answer: str) -> str:
        """One probe or final answer as stored (cached per gold and answer)."""
        if self.mode == "none" or answer == ERR:
            return answer
        key = (gold, answer)
        hit = self._cache.get(key)
        if hit is None:
            if self.mode == "norm":
                hit = normalize_answer(answer)
            else:
                assert self._verify is not None
                hit = gold if answer == gold or self._verify(gold, answer) else answer
            self._cache[key] = hit
        return hit


def _latex(s: str) -> str:
    # math-verify only parses LaTeX inside math delimiters; bare answers are wrapped.
    return s if "$" in s or s.startswith("\\(") or s.startswith("\\[") else f"${s}$"


def _math_verify() -> Callable[[str, str], bool]:
    try:
        from math_verify import parse, verify
    except ImportError:
        raise CanonicalizeError("--canonicalize gold needs math-verify: pip install math-verify") \
            from None
    parsed_gold: dict[str, object] = {}

    def equal(gold: str, answer: str) -> bool:
        if gold not in parsed_gold:
            parsed_gold[gold] = parse(_latex(gold))
        try:
            # Gold first: math-verify's comparison is not symmetric.
            return bool(verify(parsed_gold[gold], parse(_latex(answer))))
        except Exception:  # noqa: BLE001 - an unparsable answer is simply not equal
            return False

    return equal
