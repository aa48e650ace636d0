"""Replay packs: compact, immutable, content-hashed ``.npz`` files the sandbox runtime replays.

A pack holds only what replay needs (branch answers, tokens, probe_freq); the gold answers go to a
``<stem>.key.json`` beside it that only the host-side judge reads and the sandbox never sees. The pack's
vocabulary is built from branch answers alone, so a gold answer no branch produced is not in the box.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autotts_graph.sandbox.runtime.replay import PACK_FORMAT

if TYPE_CHECKING:
    import numpy as np  # imported where packs are built: a one-off `eval` reaching a cached pack never needs it


def build_pack_arrays(name: str, records: list[dict]) -> dict[str, np.ndarray]:
    """Arrays of a pack from AutoTTS question records (answers interned to integer codes, no gold)."""
    import numpy as np

    vocab: dict[str, int] = {}

    def code(s: str) -> int:
        c = vocab.get(s)
        if c is None:
            c = vocab[s] = len(vocab)
        return c

    freq, q_off, p_off, probes, tokens, finals = [], [0], [0], [], [], []
    for rec in records:
        freq.append(int(rec["probe_freq"]))
        for probe_answers, branch_tokens, final in rec["each_branch"]:
            probes.extend(code(a) for a in probe_answers)
            p_off.append(len(probes))
            tokens.append(int(branch_tokens))
            finals.append(code(final))
        q_off.append(len(tokens))
    arrays = {
        "vocab": np.array(list(vocab), dtype=str) if vocab else np.array([], dtype="<U1"),
        "probe_freq": np.array(freq, dtype=np.int64),
        "question_offsets": np.array(q_off, dtype=np.int64),
        "probe_offsets": np.array(p_off, dtype=np.int64),
        "probes": np.array(probes, dtype=np.int32),
        "tokens": np.array(tokens, dtype=np.int64),
        "finals": np.array(finals, dtype=np.int32),
    }
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    content_hash = digest.hexdigest()
    arrays["meta"] = np.array(json.dumps({"format": PACK_FORMAT, "name": name, "content_hash": content_hash}))
    return arrays


def pack_hash(arrays: dict[str, np.ndarray]) -> str:
    """The content hash stored in a pack's metadata."""
    return json.loads(str(arrays["meta"]))["content_hash"]


def pack_stem(name: str, env_content_hash: str) -> str:
    """File name (without suffix) of an environment's pack: changes with the name, content and format."""
    return hashlib.sha256(f"{PACK_FORMAT}:{name}:{env_content_hash}".encode()).hexdigest()


def key_path(pack: str | Path) -> Path:
    """The host-only answer key beside a pack."""
    pack = Path(pack)
    return pack.with_name(f"{pack.stem}.key.json")


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # Write-then-rename so a concurrent reader never sees a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_pack(name: str, records: list[dict], directory: str | Path, stem: str | None = None) -> Path:
    """Write (or reuse) the pack of these records and its answer key under ``directory``.

    The file is named ``stem`` (default: the pack's content hash); an existing file is reused as is. The key
    (gold answers) is written first and readable by its owner only: the sandbox's task user never reads it.
    """
    directory = Path(directory)
    if stem is not None and (directory / f"{stem}.npz").exists() and key_path(directory / f"{stem}.npz").exists():
        return directory / f"{stem}.npz"
    arrays = build_pack_arrays(name, records)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or pack_hash(arrays)}.npz"
    if path.exists() and key_path(path).exists():
        return path
    key = {"format": PACK_FORMAT, "name": name, "pack_hash": pack_hash(arrays),
           "gold": [str(rec["gold_answer"]) for rec in records]}
    _write_atomic(key_path(path), json.dumps(key).encode(), 0o600)
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_atomic(path, buf.getvalue(), 0o644)
    return path
