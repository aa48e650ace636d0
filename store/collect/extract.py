"""Answer extraction from probe continuations and from a branch's final text."""

from __future__ import annotations

ERR = "ERR"
BOXED = "\\boxed{"


def extract_probe_answer(text: str) -> str:
    """The text up to the first unmatched ``}`` (the probe suffix opened the brace), stripped.

    ``ERR`` when the brace is never closed or nothing stands before it.
    """
    depth = 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                answer = text[:i].strip()
                return answer if answer else ERR
            depth -= 1
    return ERR


def extract_final_answer(text: str) -> str:
    """The content of the last complete ``\\boxed{...}`` in ``text``; ``ERR`` when there is none."""
    start = text.rfind(BOXED)
    while start != -1:
        answer = extract_probe_answer(text[start + len(BOXED):])
        if answer != ERR:
            return answer
        # An unclosed last box (cut answer): fall back to an earlier complete one.
        start = text.rfind(BOXED, 0, start)
    return ERR
