"""Stage a checked upload on local disk, so that its size is not bounded by memory.

Each file is read block by block (:func:`kafer.readers.scan_export`) and every block of normalized
rows is appended to a Parquet file in a temporary folder as it comes; once the file has passed,
its rows are sorted by KNR then DATA into exactly the Parquet the raw zone keeps (zstd, row
groups of 256,000 rows), one run of cars at a time when the file holds more rows than are sorted
at once. Nothing here touches the lake: :mod:`kafer.catalog` lands the staged files.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .lake import PARQUET_COMPRESSION, ROW_GROUP_SIZE
from .readers import Progress, scan_export, schema
from .sources import Fetched

#: Rows sorted in memory at once (a run of 4 M resultados rows peaks at about 1.3 GB); a file with
#: more is split into runs of whole cars first.
SORT_ROWS = 4_000_000
#: How rows wait on local disk between reading and sorting: fast to write and read back.
_STAGE_COMPRESSION = "lz4"
_ORDER = [("KNR", "ascending"), ("DATA", "ascending")]


class Staging:
    """A temporary folder for one upload's staged files, removed by :meth:`close`, or else when the
    last object referring to it is gone (or at exit).

    Parameters
    ----------
    parent : str
        The folder to make it in; empty for the system's temporary folder.
    """

    def __init__(self, parent: str = ""):
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._folder = tempfile.TemporaryDirectory(prefix="kafer-upload-", dir=parent or None,
                                                   ignore_cleanup_errors=True)
        self.path = self._folder.name

    def file(self, stem: str) -> str:
        """A new file name in the folder."""
        return os.path.join(self.path, f"{stem}-{uuid.uuid4().hex[:12]}.parquet")

    def discard(self, path: str) -> None:
        """Remove one file of the folder that is not needed any more."""
        os.remove(path)

    def close(self) -> None:
        """Remove the folder and everything in it."""
        self._folder.cleanup()


@dataclass(frozen=True)
class StagedExport:
    """One accepted file, held on local disk: what it holds, its original bytes (``original``, the
    upload's own file or a copy in the staging folder) and its rows sorted for the raw zone
    (``rows_path``)."""

    name: str
    kind: str
    format: str
    sha256: str
    size: int
    sheets: tuple[str, ...]
    rows: int
    cars: int
    period: tuple[dt.datetime, dt.datetime]
    original: Fetched
    rows_path: str
    staging: Staging = field(repr=False, compare=False)

    def read_rows(self) -> pa.Table:
        """The staged rows, whole and typed as read (for a small upload, such as cars to score)."""
        return pq.read_table(self.rows_path).cast(schema(self.kind))

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The staged rows, batch by batch."""
        return pq.ParquetFile(self.rows_path).iter_batches(columns=columns)


def stage_export(fetched: Fetched, name: str, *, staging: Staging,
                 dates_within: tuple[dt.datetime, dt.datetime], progress: Progress | None = None,
                 sort_rows: int = SORT_ROWS) -> StagedExport:
    """Read and check one file, writing its rows to the staging folder as they are read, then
    sort them for the raw zone.

    Raises
    ------
    UploadError
        As :func:`kafer.readers.scan_export`.
    """
    unsorted = staging.file("read")
    sink = _Appender(unsorted, compression=_STAGE_COMPRESSION)
    try:
        scanned = scan_export(fetched.path, name, write=sink.write, restart=sink.restart,
                              dates_within=dates_within, progress=progress)
    finally:
        sink.close()
    if progress:
        progress(f"sorting {name} by car")
    rows_path = staging.file("rows")
    try:
        sort_rows_file(unsorted, rows_path, schema(scanned.kind), staging=staging, run_rows=sort_rows)
    finally:
        os.remove(unsorted)
    return StagedExport(name=name, kind=scanned.kind, format=scanned.format, sha256=fetched.sha256,
                        size=scanned.size, sheets=scanned.sheets, rows=scanned.rows, cars=scanned.cars,
                        period=scanned.period, original=fetched, rows_path=rows_path, staging=staging)


class _Appender:
    """Appends blocks of rows to a Parquet file, one row group a block; starts the file anew on ``restart``."""

    def __init__(self, path: str, *, compression: str):
        self.path = path
        self.compression = compression
        self.writer: pq.ParquetWriter | None = None

    def write(self, rows: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, rows.schema, compression=self.compression)
        self.writer.write_table(rows, row_group_size=max(rows.num_rows, 1))

    def restart(self) -> None:
        self.close()
        self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def sort_rows_file(source: str, target: str, rows_schema: pa.Schema, *, staging: Staging,
                   run_rows: int = SORT_ROWS, row_group_size: int = ROW_GROUP_SIZE) -> None:
    """Write the rows of the Parquet file ``source`` to ``target`` sorted by KNR then DATA, rows
    of equal keys in their order in ``source``, typed ``rows_schema`` (Parquet keeps no seconds:
    ``DATA`` comes back in milliseconds): the same bytes as sorting the whole table at once and
    writing it in row groups of ``row_group_size``, zstd.

    A file of more than ``run_rows`` rows is first split into runs of whole cars (consecutive
    ranges of KNR) of at most ``run_rows`` rows each (unless one car alone has more), which are
    sorted one after another; so at most about ``run_rows`` rows are held at once.
    """
    runs = [source] if pq.ParquetFile(source).metadata.num_rows <= run_rows else \
        _split_by_car(source, staging=staging, run_rows=run_rows)
    carry: pa.Table | None = None
    with pq.ParquetWriter(target, rows_schema, compression=PARQUET_COMPRESSION) as out:
        for run in runs:
            table = pq.read_table(run).cast(rows_schema)
            table = table.take(pc.sort_indices(table, sort_keys=_ORDER))
            if run != source:
                os.remove(run)
            if carry is not None:
                table = pa.concat_tables([carry, table]).combine_chunks()
            whole = table.num_rows - table.num_rows % row_group_size
            if whole:
                out.write_table(table.slice(0, whole), row_group_size=row_group_size)
            carry = table.slice(whole)
        if carry is not None and carry.num_rows:
            out.write_table(carry, row_group_size=row_group_size)


def _split_by_car(source: str, *, staging: Staging, run_rows: int) -> list[str]:
    """Split a Parquet file into files of whole cars, in KNR order, of at most ``run_rows`` rows
    each (a car with more makes a run of its own); rows keep their order within each."""
    counts: dict[str, int] = {}
    file = pq.ParquetFile(source)
    for batch in file.iter_batches(columns=["KNR"]):
        found = pc.value_counts(batch.column("KNR"))
        for car, n in zip(found.field("values").to_pylist(), found.field("counts").to_pylist()):
            counts[car] = counts.get(car, 0) + n
    cars = sorted(counts)
    run_of_car = np.empty(len(cars), dtype=np.int64)
    run, held = 0, 0
    for i, car in enumerate(cars):
        if held and held + counts[car] > run_rows:
            run, held = run + 1, 0
        run_of_car[i] = run
        held += counts[car]
    value_set = pa.array(cars, pa.string())
    paths = [staging.file(f"run{r}") for r in range(run + 1)]
    writers = [_Appender(p, compression=_STAGE_COMPRESSION) for p in paths]
    try:
        for batch in file.iter_batches():
            runs = run_of_car[pc.index_in(batch.column("KNR"), value_set=value_set).to_numpy()]
            table = pa.Table.from_batches([batch])
            for r in np.unique(runs):
                writers[r].write(table.filter(pa.array(runs == r)))
    finally:
        for writer in writers:
            writer.close()
    return paths
