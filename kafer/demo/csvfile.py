"""Write a CSV as pandas and the plant's tools write them, straight from Arrow string columns."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CHUNK = 200_000


@dataclass(frozen=True)
class Column:
    """One column to write: its cells as text (null: empty cell), whether xlsx gets numbers, date style."""

    values: pa.Array
    number: bool | pa.Array = False
    style: int = 0  # xlsx: 1 date to the second, 2 to the millisecond


def chunk_bytes(lines: pa.Array) -> memoryview:
    """The concatenated text of a string array, without copying."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]]


def write_csv(path: Path, header: list[str], cols: list[Column], *, sep: str, encoding: str, index: bool) -> None:
    """A CSV as pandas writes it (``index``: the leading unnamed row-number column), gzip for ``.gz``."""
    n = len(cols[0].values)
    with open(path, "wb") as raw:
        out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if path.suffix == ".gz" else raw
        out.write((sep.join([""] * index + header) + "\n").encode(encoding))
        for a in range(0, n, _CHUNK):
            b = min(n, a + _CHUNK)
            fields = [_quoted(c.values.slice(a, b - a), sep) for c in cols]
            if index:
                fields.insert(0, pa.array(np.arange(a, b)).cast(pa.string()))
            lines = pc.binary_join_element_wise(*fields, sep, null_handling="replace")
            data = chunk_bytes(pc.binary_join_element_wise(lines, "\n", ""))
            out.write(data if encoding == "utf-8" else bytes(data).decode("utf-8").encode(encoding))
        if out is not raw:
            out.close()


def _quoted(values: pa.Array, sep: str) -> pa.Array:
    needs = pc.fill_null(pc.match_substring_regex(values, f'[{sep}"\n]'), False)
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)
