"""Controller code out of a model's reply: fenced blocks, SEARCH/REPLACE diffs against the parent (applied
line-exact, else line by line up to trailing whitespace) and the static re-check of a patched source."""

from __future__ import annotations

import re

from .roles import HistoryEntry

_CODE_BLOCK = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = ("", "python", "py", "python3")


def extract_code(text: str) -> str | None:
    """The controller code a reply offers: its largest fenced Python block that defines a class, else its largest
    fenced Python (or untagged) block, else the whole reply if it reads as a bare controller; None without code.

    A block without a class is still the reply's code: the checks then say what it lacks, and the proposer gets
    that back as feedback (a small model's broken code goes through check and revision, not silently away)."""
    blocks = [b.strip() for lang, b in _CODE_BLOCK.findall(text or "") if lang.lower() in _PYTHON_TAGS and b.strip()]
    if blocks:
        with_class = [b for b in blocks if "class " in b]
        return max(with_class or blocks, key=len) + "\n"
    if text and "class " in text and "def solve" in text and "```" not in text:
        return text.strip() + "\n"
    return None


_DIFF_BLOCK = re.compile(r"<{5,9} SEARCH[^\n]*\n(.*?)\n?={5,9}[ \t]*\n(.*?)\n?>{5,9} REPLACE", re.DOTALL)


class DiffError(ValueError):
    """SEARCH/REPLACE blocks that cannot be applied to the parent, or whose result breaks the static rules."""


def parse_diff(text: str) -> list[tuple[str, str]]:
    """The SEARCH/REPLACE blocks of a reply, in order (empty when there are none)::

        <<<<<<< SEARCH
        lines of the parent, verbatim
        =======
        their replacement
        >>>>>>> REPLACE
    """
    return [(m.group(1), m.group(2)) for m in _DIFF_BLOCK.finditer(text or "")]


def _find_lines(source: str, search: str) -> list[tuple[int, int]]:
    """Character spans of ``source`` whose lines equal ``search``'s lines up to trailing whitespace."""
    lines = source.splitlines(keepends=True)
    want = [line.rstrip() for line in search.splitlines()]
    if not want:
        return []
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    out = []
    for i in range(len(lines) - len(want) + 1):
        if all(lines[i + k].rstrip() == want[k] for k in range(len(want))):
            out.append((starts[i], starts[i + len(want)]))
    return out


def apply_diff(source: str, blocks: list[tuple[str, str]]) -> str:
    """Apply SEARCH/REPLACE blocks one after another; each search must match exactly one place (verbatim,
    else line by line up to trailing whitespace). DiffError names the block that does not apply."""
    if not blocks:
        raise DiffError("no SEARCH/REPLACE blocks")
    for n, (search, replace) in enumerate(blocks, 1):
        if not search.strip():
            raise DiffError(f"block {n}: the SEARCH part is empty; quote the parent's lines to replace")
        count = source.count(search)
        if count == 1:
            source = source.replace(search, replace, 1)
            continue
        if count > 1:
            raise DiffError(f"block {n}: the SEARCH part matches {count} places; quote more lines so it is unique")
        spans = _find_lines(source, search)
        if len(spans) != 1:
            first = search.strip().splitlines()[0][:80]
            raise DiffError(f"block {n}: the SEARCH part ({first!r}...) "
                            + ("is not in the parent" if not spans else f"matches {len(spans)} places")
                            + "; copy the parent's lines exactly")
        a, b = spans[0]
        tail = "\n" if source[a:b].endswith("\n") and not replace.endswith("\n") else ""
        source = source[:a] + replace + tail + source[b:]
    return source


def resolve_source(text: str, parent: HistoryEntry | None) -> tuple[str, str]:
    """(complete source, how it was made) from a submission or reply: a full rewrite, or a diff applied to the
    parent and re-checked statically. DiffError when the diff does not apply or breaks the rules."""
    blocks = parse_diff(text)
    if not blocks:
        code = extract_code(text) if "```" in (text or "") else text
        if not code or not code.strip():
            raise DiffError("no controller source and no SEARCH/REPLACE blocks")
        return code if code.endswith("\n") else code + "\n", "full rewrite"
    if parent is None or not parent.source:
        raise DiffError("there is no parent to apply SEARCH/REPLACE blocks to: submit the complete source")
    from autotts_graph.sandbox.static_checks import check_source

    source = apply_diff(parent.source, blocks)
    report = check_source(source)
    if report.errors:
        raise DiffError("the patched source breaks the controller rules: " + "; ".join(report.errors[:3]))
    return source, f"diff against {parent.candidate_id} ({len(blocks)} block{'s' if len(blocks) > 1 else ''})"
