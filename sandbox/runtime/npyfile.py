"""Read ``.npy`` arrays and ``.npz`` archives with the standard library only.

The runtime must load replay packs and the Beta-confidence table under PyPy, where numpy is absent. This
reader covers exactly what ``numpy.save``/``numpy.savez`` write for packs: little-endian int32, int64 and
float64 vectors or matrices, fixed-width unicode (``<U``) vectors and 0-d unicode scalars. The raw bytes
are taken as they are, so floats are bit-identical to what numpy would load.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from array import array
from typing import Any

_MAGIC = b"\x93NUMPY"
_TYPECODES = {"<i4": "i", "<i8": "q", "<f8": "d"}


def _parse(data: bytes, what: str) -> tuple[Any, tuple[int, ...]]:
    """(flat values, shape) of one .npy blob: an array('i'/'q'/'d') or a list of str."""
    if data[:6] != _MAGIC:
        raise ValueError(f"{what}: not an .npy array")
    major = data[6]
    if major == 1:
        hlen, start = int.from_bytes(data[8:10], "little"), 10
    else:
        hlen, start = int.from_bytes(data[8:12], "little"), 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    body = data[start + hlen:]
    descr, shape = header["descr"], tuple(header["shape"])
    if header.get("fortran_order"):
        raise ValueError(f"{what}: Fortran-ordered arrays are not supported")
    count = 1
    for dim in shape:
        count *= dim
    if descr in _TYPECODES:
        values = array(_TYPECODES[descr])
        if values.itemsize != int(descr[2:]):
            raise ValueError(f"{what}: no {descr} array type on this platform")
        values.frombytes(body[:count * values.itemsize])
        if sys.byteorder != "little":
            values.byteswap()
        return values, shape
    if descr.startswith("<U"):
        width = int(descr[2:])
        text = body[:count * width * 4].decode("utf-32-le")
        # numpy pads fixed-width strings with NULs and strips them on access.
        return [text[i * width:(i + 1) * width].rstrip("\x00") for i in range(count)], shape
    raise ValueError(f"{what}: unsupported dtype {descr!r}")


def load_npz(path: str) -> dict:
    """Every member of an .npz archive: 1-d arrays as lists, 0-d strings as str, 2-d as lists of rows."""
    out = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            out[key] = _shaped(*_parse(archive.read(member), f"{path}:{member}"))
    return out


def load_npy(path: str) -> Any:
    """One .npy file as a list (1-d), a list of row lists (2-d) or a scalar (0-d)."""
    with open(path, "rb") as fh:
        return _shaped(*_parse(fh.read(), str(path)))


def _shaped(values: Any, shape: tuple[int, ...]) -> Any:
    flat: list[Any] = list(values)
    if len(shape) == 0:
        return flat[0]
    if len(shape) == 1:
        return flat
    if len(shape) == 2:
        rows, cols = shape
        return [flat[r * cols:(r + 1) * cols] for r in range(rows)]
    raise ValueError(f"arrays of rank {len(shape)} are not supported")
