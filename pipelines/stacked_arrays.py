"""Many small arrays of a state archive stored as a few (``statistics.npz``).

A run with 1,000 slices holds 13 arrays per slice; written one archive member each, the members' headers and
compressor set-ups cost more than their contents (0.5 s for 13,000 arrays). Arrays named ``{letter}{n}/{rest}``
(``s12/t0/counts``: slice 12's statistic 0) that share ``rest``, dtype and number of dimensions are stored as
one group of a few arrays:

* ``{letter}*/{rest}~values``: their flattened contents, concatenated in the order of ``~members``; for a dtype
  of several bytes, ``~planes`` instead (uint8 ``[itemsize, n]``: the first byte of every value, then the second...,
  which deflate packs a third smaller, and faster, than the values as they are) with ``~dtype`` (its ``dtype.str``);
* ``{letter}*/{rest}~shapes``: int64 ``[members, ndim]``, each member's shape;
* ``{letter}*/{rest}~members``: int64 ``[members]``, each member's ``n``.

Every other array is stored as it is: the arrays of a group averaging more than :data:`GROUPED_BYTES` too (a few
large arrays cost nothing per member, and copying them into one would). Archives written before groups existed read
back unchanged.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np

GROUP = "*"
"""Stands for the member number in a group's names."""

GROUPED_BYTES = 1 << 16
"""Like arrays are grouped while they average at most this many bytes."""

_VALUES, _PLANES, _DTYPE, _SHAPES, _MEMBERS = "~values", "~planes", "~dtype", "~shapes", "~members"


def _member(name: str) -> tuple[str, int, str] | None:
    """``(letter, n, rest)`` of a name ``{letter}{n}/{rest}``, else None."""
    head, sep, rest = name.partition("/")
    if not sep or len(head) < 2 or not head[0].isalpha() or not head[1:].isdigit():
        return None
    return head[0], int(head[1:]), rest


def stack_arrays(arrays: Mapping[str, np.ndarray], *, planes: bool = True) -> dict[str, np.ndarray]:
    """``arrays`` with every group of at least two like-named arrays of one dtype and number of dimensions stored
    as a few arrays (see the module's docstring); ``planes=False``: the values as they are (for an archive that
    is not compressed). The inverse is :func:`unstack_arrays`."""
    groups: dict[tuple[str, str], list[tuple[int, str, np.ndarray]]] = {}
    out: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        parsed = _member(name)
        if parsed is None:
            out[name] = array
            continue
        letter, n, rest = parsed
        groups.setdefault((letter, rest), []).append((n, name, np.asarray(array)))
    for (letter, rest), members in groups.items():
        first = members[0][2]
        alike = all(a.dtype == first.dtype and a.ndim == first.ndim for _, _, a in members)
        small = sum(a.nbytes for _, _, a in members) <= GROUPED_BYTES * len(members)
        if len(members) < 2 or not alike or not small:
            out.update({name: array for _, name, array in members})
            continue
        base = f"{letter}{GROUP}/{rest}"
        values = np.concatenate([a.reshape(-1) for _, _, a in members])
        if planes and values.dtype.itemsize > 1:
            out[base + _PLANES] = np.ascontiguousarray(values.view(np.uint8).reshape(-1, values.dtype.itemsize).T)
            out[base + _DTYPE] = np.array(values.dtype.str)
        else:
            out[base + _VALUES] = values
        out[base + _SHAPES] = np.array([a.shape for _, _, a in members], np.int64).reshape(len(members), first.ndim)
        out[base + _MEMBERS] = np.array([n for n, _, _ in members], np.int64)
    return out


def unstack_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`stack_arrays`, in place: each member comes back as a view of its group's values."""
    for name in [k for k in arrays if k.endswith(_MEMBERS)]:
        base = name[: -len(_MEMBERS)]
        letter, rest = base.split(f"{GROUP}/", 1)
        members, shapes = arrays.pop(name), arrays.pop(base + _SHAPES)
        if base + _PLANES in arrays:
            dtype = np.dtype(str(arrays.pop(base + _DTYPE)))
            values = np.ascontiguousarray(arrays.pop(base + _PLANES).T).view(dtype).reshape(-1)
        else:
            values = arrays.pop(base + _VALUES)
        ends = np.cumsum(np.prod(shapes, axis=1, dtype=np.int64)).tolist()
        start = 0
        for n, shape, end in zip(members.tolist(), shapes.tolist(), ends, strict=True):
            arrays[f"{letter}{n}/{rest}"] = values[start:end].reshape(shape)
            start = end
    return arrays


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file (no pickles), deflated at level 1: most of the size gain of the
    default level at a fraction of the time (a 64 MB state took 0.7 s at the default level)."""
    buffer = io.BytesIO()
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
    try:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    except BaseException:
        # dropped unfinished: a SIGTERM as a member opens leaves it open, and closing the archive would raise
        # "Can't close the ZIP file while there is an open writing handle" over the Stopped (exit 1, not 143)
        archive.fp = None
        raise
    archive.close()
    return buffer.getvalue()
