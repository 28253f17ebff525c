"""Stage a checked upload on local disk, so that its size is not bounded by memory.

Each file is read block by block (:func:`kafer.readers.scan_export`); its blocks of normalized rows
(text dictionary-encoded: a few bytes a cell) are held in memory as they come, up to
:data:`SORT_ROWS` rows, and appended to a Parquet file in a temporary folder beyond. Once the file
has passed, its rows are sorted by KNR then DATA into exactly the Parquet the raw zone keeps (zstd,
row groups of 256,000 rows): at once when they were held, else one run of cars at a time. Nothing
here touches the lake: :mod:`kafer.catalog` lands the staged files.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .lake import PARQUET_COMPRESSION, ROW_GROUP_SIZE
from .readers import Progress, scan_export, schema
from .sources import Fetched

#: Rows of one file held in memory and sorted at once (held dictionary-encoded, ~40 bytes a
#: resultados row: a month's 5.5 M rows peak the whole ingest at about 1.6 GB); a file with more is
#: spilled to local disk and sorted in runs of whole cars of at most this many rows.
SORT_ROWS = 8_000_000
#: How spilled rows wait on local disk between reading and sorting: fast to write and read back.
_STAGE_COMPRESSION = "lz4"
_ORDER = [("KNR", "ascending"), ("DATA", "ascending")]


class Staging:
    """A temporary folder for one upload's staged files, removed by :meth:`close`, or else when the
    last object referring to it is gone (or at exit), and a thread that sorts and writes a file's
    rows while the next file is read.

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
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def later(self, write: Callable[[], str]) -> Future:
        """Run ``write`` on the folder's writing thread, after the writes handed over before it."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafer-staging")
        self._pending.append(self._writer.submit(write))
        return self._pending[-1]

    def wait(self) -> None:
        """Wait for every write handed over; the first that failed raises its error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def file(self, stem: str) -> str:
        """A new file name in the folder."""
        return os.path.join(self.path, f"{stem}-{uuid.uuid4().hex[:12]}.parquet")

    def discard(self, path: str) -> None:
        """Remove one file of the folder that is not needed any more."""
        os.remove(path)

    def close(self) -> None:
        """Stop the writes not begun, wait for the one under way, and remove the folder and everything in it."""
        if self._writer is not None:
            self._writer.shutdown(wait=True, cancel_futures=True)
            self._writer = None
        self._pending = []
        self._folder.cleanup()


@dataclass(frozen=True)
class StagedExport:
    """One accepted file, held on local disk: what it holds, its original bytes (``original``, the
    upload's own file or a copy in the staging folder) and its rows sorted for the raw zone
    (``rows_path``, written on the staging folder's thread: ``sorted_rows`` until it is)."""

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
    sorted_rows: Future = field(repr=False, compare=False)
    staging: Staging = field(repr=False, compare=False)

    @property
    def rows_path(self) -> str:
        """The Parquet file of the sorted rows, once written."""
        return self.sorted_rows.result()

    def read_rows(self) -> pa.Table:
        """The staged rows, whole and typed as read (for a small upload, such as cars to score)."""
        return pq.read_table(self.rows_path).cast(schema(self.kind))

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The staged rows, batch by batch."""
        return pq.ParquetFile(self.rows_path).iter_batches(columns=columns)


def stage_export(fetched: Fetched, name: str, *, staging: Staging,
                 dates_within: tuple[dt.datetime, dt.datetime], progress: Progress | None = None,
                 sort_rows: int | None = None) -> StagedExport:
    """Read and check one file, holding its rows as they are read (spilling them to the staging
    folder past ``sort_rows``, default :data:`SORT_ROWS`), then hand them to the staging folder's
    thread to be sorted for the raw zone (:attr:`StagedExport.rows_path` waits for it).

    Raises
    ------
    UploadError
        As :func:`kafer.readers.scan_export`.
    """
    sort_rows = sort_rows or SORT_ROWS
    held = _Held(staging, hold_rows=sort_rows)
    try:
        scanned = scan_export(fetched.path, name, write=held.write, restart=held.restart,
                              dates_within=dates_within, progress=progress)
    except BaseException:
        held.close()
        raise
    if progress:
        progress(f"sorting {name} by car")
    rows_path = staging.file("rows")

    def write() -> str:
        try:
            held.sort_into(rows_path, schema(scanned.kind), run_rows=sort_rows)
        finally:
            held.close()
        return rows_path

    return StagedExport(name=name, kind=scanned.kind, format=scanned.format, sha256=fetched.sha256,
                        size=scanned.size, sheets=scanned.sheets, rows=scanned.rows, cars=scanned.cars,
                        period=scanned.period, original=fetched, sorted_rows=staging.later(write), staging=staging)


class _Held:
    """The blocks of one file as they are read: kept in memory while they hold at most
    ``hold_rows`` rows, else all of them appended to a Parquet file in the staging folder."""

    def __init__(self, staging: Staging, *, hold_rows: int):
        self.staging = staging
        self.hold_rows = hold_rows
        self.blocks: list[pa.Table] = []
        self.rows = 0
        self.spilled: _Appender | None = None

    def write(self, rows: pa.Table) -> None:
        self.rows += rows.num_rows
        if self.spilled is None and self.rows <= self.hold_rows:
            self.blocks.append(rows)
            return
        if self.spilled is None:
            self.spilled = _Appender(self.staging.file("read"), compression=_STAGE_COMPRESSION)
            for block in self.blocks:
                self.spilled.write(block)
            self.blocks = []
        self.spilled.write(rows)

    def restart(self) -> None:
        """Forget every block so far: the file is read again from its start."""
        self.close()
        self.rows = 0

    def sort_into(self, target: str, rows_schema: pa.Schema, *, run_rows: int) -> None:
        """Write the rows to ``target`` as :func:`sort_rows_file` does."""
        if self.spilled is None:
            with _RowGroups(target, rows_schema) as out:
                out.write(_sorted(pa.concat_tables(self.blocks)))
            return
        self.spilled.close()
        sort_rows_file(self.spilled.path, target, rows_schema, staging=self.staging, run_rows=run_rows)

    def close(self) -> None:
        """Drop the blocks held and the spilled file."""
        self.blocks = []
        if self.spilled is not None:
            self.spilled.close()
            self.staging.discard(self.spilled.path)
            self.spilled = None


class _Appender:
    """Appends blocks of rows to a Parquet file, one row group a block."""

    def __init__(self, path: str, *, compression: str):
        self.path = path
        self.compression = compression
        self.writer: pq.ParquetWriter | None = None

    def write(self, rows: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, rows.schema, compression=self.compression)
        self.writer.write_table(rows, row_group_size=max(rows.num_rows, 1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _RowGroups:
    """Writes rows to a Parquet file typed ``rows_schema`` (text decoded), zstd, in row groups of
    exactly ``size`` rows but the last, however the rows are handed over: the bytes of writing
    them all in one call."""

    def __init__(self, path: str, rows_schema: pa.Schema, size: int = ROW_GROUP_SIZE):
        self.writer = pq.ParquetWriter(path, rows_schema, compression=PARQUET_COMPRESSION)
        self.schema = rows_schema
        self.size = size
        self.held: pa.Table | None = None

    def __enter__(self) -> "_RowGroups":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.held is not None:
            self.writer.write_table(self.held, row_group_size=self.size)
        self.writer.close()

    def write(self, table: pa.Table) -> None:
        start = 0
        if self.held is not None:
            head = self._typed(table.slice(0, self.size - self.held.num_rows))
            self.held = pa.concat_tables([self.held, head]).combine_chunks()
            start = head.num_rows
            if self.held.num_rows < self.size:
                return
            self.writer.write_table(self.held, row_group_size=self.size)
            self.held = None
        while table.num_rows - start >= self.size:
            self.writer.write_table(self._typed(table.slice(start, self.size)), row_group_size=self.size)
            start += self.size
        if start < table.num_rows:
            self.held = self._typed(table.slice(start))

    def _typed(self, rows: pa.Table) -> pa.Table:
        return rows.cast(self.schema).combine_chunks()


def _sorted(table: pa.Table) -> pa.Table:
    """The rows sorted by KNR then DATA, rows of equal keys in their order (Arrow's sort is stable).

    Text may be dictionary-encoded, each block with its own dictionary: the dictionaries are
    unified, and rows are sorted by the rank of their KNR among the distinct KNRs, the order of
    sorting the text itself, without comparing text row by row.
    """
    table = table.unify_dictionaries().combine_chunks()
    if table.num_rows == 0:
        return table
    knr = table["KNR"].chunk(0)
    if not pa.types.is_dictionary(knr.type):
        knr = pc.dictionary_encode(knr)
    rank = pc.take(pc.rank(knr.dictionary, sort_keys="ascending", tiebreaker="dense"), knr.indices)
    return table.take(pc.sort_indices(pa.table({"KNR": rank, "DATA": table["DATA"]}), sort_keys=_ORDER))


def sort_rows_file(source: str, target: str, rows_schema: pa.Schema, *, staging: Staging,
                   run_rows: int = SORT_ROWS, row_group_size: int = ROW_GROUP_SIZE) -> None:
    """Write the rows of the Parquet file ``source`` to ``target`` sorted by KNR then DATA, rows
    of equal keys in their order in ``source``, typed ``rows_schema`` (Parquet keeps no seconds:
    ``DATA`` comes back in milliseconds): the same bytes as sorting the whole table at once and
    writing it in row groups of ``row_group_size``, zstd.

    A file of more than ``run_rows`` rows is first split into runs of whole cars (consecutive
    ranges of KNR) of at most ``run_rows`` rows each (unless one car alone has more), which are
    sorted one after another; so at most about ``run_rows`` rows are held at once, their text
    dictionary-encoded.
    """
    runs = [source] if pq.ParquetFile(source).metadata.num_rows <= run_rows else \
        _split_by_car(source, staging=staging, run_rows=run_rows)
    text = [f.name for f in rows_schema if pa.types.is_string(f.type)]
    with _RowGroups(target, rows_schema, row_group_size) as out:
        for run in runs:
            table = pq.read_table(run, read_dictionary=text)
            if run != source:
                os.remove(run)
            out.write(_sorted(table))


def _split_by_car(source: str, *, staging: Staging, run_rows: int) -> list[str]:
    """Split a Parquet file into files of whole cars, in KNR order, of at most ``run_rows`` rows
    each (a car with more makes a run of its own); rows keep their order within each."""
    counts: dict[str, int] = {}
    file = pq.ParquetFile(source)
    for batch in file.iter_batches(columns=["KNR"]):
        found = pc.value_counts(batch.column("KNR").cast(pa.string()))
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
            knr = batch.column("KNR").cast(pa.string())
            runs = run_of_car[pc.index_in(knr, value_set=value_set).to_numpy()]
            table = pa.Table.from_batches([batch])
            for r in np.unique(runs):
                writers[r].write(table.filter(pa.array(runs == r)))
    finally:
        for writer in writers:
            writer.close()
    return paths
