"""Read one of the plant's exports (xlsx, csv, csv.gz) into normalized, validated rows.

Pure: bytes (or a local file) and a file name in, an :class:`Export` out, or block after block of
rows handed to a writer (:func:`scan_export`, for files larger than memory); nothing touches the
lake. The kind (resultados, falhas, status) is recognized from the header, the file name being
only a hint.
Every sheet of a workbook is read, the header row is found wherever it is, continuation sheets
without a header take the previous sheet's columns. Values are normalized so that the same row
read from xlsx or csv is the same row: text stripped, numbers as the text of their number
(``80.0`` = ``80``), ``DATA`` a timestamp to the second, inside a plausible window.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gc
import hashlib
import io
import itertools
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError, UploadError
from .i18n import tr

#: Required columns of each kind, in the plant's order.
KINDS: dict[str, tuple[str, ...]] = {
    "resultados": ("KNR", "NAME", "ID", "STATUS", "UNIT", "VALUE_ID", "VALUE", "DATA"),
    "falhas": ("KNR", "MODELO", "COR", "MOTOR", "ESTACAO", "USUARIO", "HALLE", "FALHA", "DATA"),
    "status": ("KNR", "STATUS", "DATA"),
}
#: Columns some exports of a kind add.
OPTIONAL: dict[str, tuple[str, ...]] = {"falhas": ("S_GROUP_ID",), "resultados": (), "status": ()}
#: Columns stored for each kind (required + optional), all text but DATA.
COLUMNS: dict[str, tuple[str, ...]] = {k: KINDS[k] + OPTIONAL[k] for k in KINDS}

#: Endings of an export's file name (case ignored, optionally followed by ``.gz``); an upload's
#: other files are left out unread.
EXPORT_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv", ".tsv")

KNR_PATTERN = r"^\d{4}-\d{7}$"
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_INTEGER = r"^[+-]?\d+(\.0*)?$"
_COMMA_NUMBER = r"^[+-]?\d+,\d+$"
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M",
                 "%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S")
_HEADER_SCAN_ROWS = 30
#: Days from 1970-01-01 back to Excel's day 0 (1899-12-30, the 1900 leap-year bug included).
_EXCEL_EPOCH_DAYS = 25_569
#: Excel's last date, 9999-12-31, as a serial day.
_EXCEL_LAST_DAY = 2_958_465
#: Rows of a workbook normalized at once, and bytes of a csv.
_CHUNK_ROWS = 250_000
_CSV_BLOCK_BYTES = 16 << 20

Progress = Callable[[str], None]
#: An export's content: its bytes, or a local file holding them (read without holding them).
Source = Union[bytes, str, os.PathLike]


@dataclass(frozen=True)
class Export:
    """One accepted file: its kind, normalized rows and what it covers."""

    name: str
    kind: str
    format: str
    sha256: str
    size: int
    table: pa.Table
    sheets: tuple[str, ...]
    period: tuple[dt.datetime, dt.datetime]

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def cars(self) -> int:
        return len(pc.unique(self.table["KNR"]))


@dataclass(frozen=True)
class Scanned:
    """What one accepted export holds, tallied block by block while it was read."""

    kind: str
    format: str
    size: int
    sheets: tuple[str, ...]
    rows: int
    cars: int
    period: tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class _Block:
    """Normalized rows read from one sheet (``None`` for a csv); the first block names the kind."""

    kind: str
    sheet: str | None
    rows: pa.Table


#: How a block of normalized rows holds text: indices into the column's distinct values.
TEXT_ENCODED = pa.dictionary(pa.int32(), pa.string())


def schema(kind: str) -> pa.Schema:
    """The normalized Arrow schema of ``kind``."""
    return pa.schema([(c, pa.timestamp("s") if c == "DATA" else pa.string()) for c in COLUMNS[kind]])


def encoded_schema(kind: str) -> pa.Schema:
    """:func:`schema` with its text dictionary-encoded, as :func:`scan_export` hands blocks over."""
    return pa.schema([(c, pa.timestamp("s") if c == "DATA" else TEXT_ENCODED) for c in COLUMNS[kind]])


def sniff_format(data: bytes) -> str:
    """``xlsx``, ``csv.gz`` or ``csv`` from the leading bytes (the name is not trusted)."""
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    if data[:2] == b"\x1f\x8b":
        return "csv.gz"
    return "csv"


def plausible_dates(since: str = "2000-01-01", *, days_ahead: float = 1.0) -> tuple[dt.datetime, dt.datetime]:
    """The window a ``DATA`` value must lie in: from the day ``since`` to ``days_ahead`` days after now (UTC).

    A date outside it is a mistyped or misread cell (a number read as 1970, a year 2099), which
    would otherwise widen the periods that make labels known. Called when an upload is checked,
    so "tomorrow" is always the day after the check.

    Raises
    ------
    ConfigError
        When ``since`` is not an ISO date.
    """
    try:
        start = dt.datetime.fromisoformat(str(since))
    except ValueError:
        raise ConfigError(f"dates_from must be an ISO date such as 2000-01-01, not {since!r}") from None
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return start, now + dt.timedelta(days=days_ahead)


def not_an_export(name: str) -> str | None:
    """Why a file of this name is no export (``not an export (.txt)``), or ``None`` when its name
    is an export's; the content of a file named like an export is then checked in full."""
    lowered = name.lower()
    if lowered.startswith("~$"):
        return "Excel's lock file of an open workbook"
    stem = lowered[:-3] if lowered.endswith(".gz") else lowered
    if stem.endswith(EXPORT_SUFFIXES):
        return None
    suffix = lowered[lowered.rfind("."):] if "." in lowered.lstrip(".") else "no extension"
    return f"not an export ({suffix})"


def read_export(data: bytes, name: str, *, sha256: str | None = None,
                dates_within: tuple[dt.datetime, dt.datetime] | None = None,
                progress: Progress | None = None) -> Export:
    """Read and check one export whole, into memory (see :func:`scan_export` to stream it).

    Parameters
    ----------
    data : bytes
        The file's content.
    name : str
        The file's name, used in messages and as a hint to its kind.
    sha256 : str, optional
        The hex SHA-256 of ``data`` when the caller has it already (it is not computed again).
    dates_within : (datetime, datetime), optional
        The first and last plausible ``DATA``; :func:`plausible_dates` when not given.
    progress : callable, optional
        Called with a short text as rows are read.

    Returns
    -------
    Export

    Raises
    ------
    UploadError
        As :func:`scan_export`.
    """
    parts: list[pa.Table] = []
    scanned = scan_export(data, name, write=parts.append, restart=parts.clear, dates_within=dates_within,
                          progress=progress)
    return Export(name=name, kind=scanned.kind, format=scanned.format,
                  sha256=sha256 or hashlib.sha256(data).hexdigest(), size=scanned.size,
                  table=pa.concat_tables(parts).cast(schema(scanned.kind)), sheets=scanned.sheets,
                  period=scanned.period)


def scan_export(source: Source, name: str, *, write: Callable[[pa.Table], None], restart: Callable[[], None],
                dates_within: tuple[dt.datetime, dt.datetime] | None = None,
                progress: Progress | None = None) -> Scanned:
    """Read and check one export block by block, handing each block of normalized rows to ``write``.

    No block is kept here, so memory holds one block whatever the file's size: at most 250,000
    rows of a workbook (its reader holds the sheet being read), one 16 MiB block of a csv. A
    block's text is dictionary-encoded (``encoded_schema(kind)``): each column is normalized
    through its distinct values, and the rows keep only indices into them, so that a block takes
    a few bytes a cell and sorting or writing it never touches the text row by row.

    Parameters
    ----------
    source : bytes or path
        The file's content, or a local file holding it (a workbook is then read from the file).
    name : str
        The file's name, used in messages and as a hint to its kind.
    write : callable
        Called with each block of normalized rows (``encoded_schema(kind)``), in the file's order.
    restart : callable
        Called when the blocks written so far are void because the file is read again from its
        start (a csv whose dates are not all date text, or whose text turns out to be cp1252).
    dates_within : (datetime, datetime), optional
        The first and last plausible ``DATA``; :func:`plausible_dates` when not given.
    progress : callable, optional
        Called with a short text as rows are read.

    Returns
    -------
    Scanned
        Kind, format, size, sheets read, rows, distinct cars and period (first and last ``DATA``).

    Raises
    ------
    UploadError
        When the file is empty, not a readable xlsx/csv, of no known kind, lacks or adds columns,
        or has a malformed KNR, an unparseable DATA or a DATA outside ``dates_within`` in any row;
        the message names the place.
    """
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    if not size:
        raise UploadError(tr("the file is empty"), file=name)
    window = dates_within or plausible_dates()
    fmt = sniff_format(_head(source, 4))
    if name.lower().endswith((".xlsx", ".xlsm")) and fmt != "xlsx":
        raise UploadError(tr("named .xlsx but is not an Excel workbook (truncated, or another format)"), file=name)
    blocks = _xlsx_blocks(source, name, window, progress) if fmt == "xlsx" else \
        _csv_blocks(source, name, fmt, window, progress)
    kind, sheets, rows, cars, first, last = None, [], 0, set(), None, None
    for block in blocks:
        if block is None:
            sheets, rows, cars, first, last = [], 0, set(), None, None
            restart()
            continue
        kind = block.kind
        if block.sheet is not None and block.sheet not in sheets:
            sheets.append(block.sheet)
        if not block.rows.num_rows:
            continue
        rows += block.rows.num_rows
        cars.update(block.rows["KNR"].chunk(0).dictionary.to_pylist())
        low, high = pc.min_max(block.rows["DATA"]).values()
        first = low.as_py() if first is None else min(first, low.as_py())
        last = high.as_py() if last is None else max(last, high.as_py())
        write(block.rows)
    if rows == 0:
        raise UploadError(tr("the {kind} export has a header but no data rows", kind=kind), file=name)
    return Scanned(kind=kind, format=fmt, size=size, sheets=tuple(sheets), rows=rows, cars=len(cars),
                   period=(first, last))


def _head(source: Source, size: int) -> bytes:
    """The first ``size`` bytes of the file."""
    if isinstance(source, bytes):
        return source[:size]
    with open(source, "rb") as fh:
        return fh.read(size)


# -- kind recognition ---------------------------------------------------------------------------

def _clean_header(cells: Iterable) -> list[str]:
    return ["" if c is None else str(c).strip().upper() for c in cells]


def _is_index_column(name: str) -> bool:
    return name == "" or name.startswith("UNNAMED:") or name == "INDEX"


def recognize_kind(header: list[str], name: str) -> str:
    """The kind whose columns the header holds; :class:`UploadError` naming what is off otherwise."""
    present = [h for h in header if not _is_index_column(h)]
    dupes = sorted({h for h in present if present.count(h) > 1})
    if dupes:
        raise UploadError(tr("column(s) {columns} appear more than once in the header", columns=", ".join(dupes)),
                          file=name)
    cols = set(present)
    scored = []
    lowered = name.lower()
    for kind in KINDS:
        missing = [c for c in KINDS[kind] if c not in cols]
        unknown = sorted(cols - set(COLUMNS[kind]))
        hint = 0 if kind[:5] in lowered else 1
        scored.append((len(missing) + len(unknown), hint, kind, missing, unknown))
    scored.sort()
    score, _, kind, missing, unknown = scored[0]
    if score == 0:
        return kind
    if len(cols & set(COLUMNS[kind])) < 2 or "KNR" not in cols:
        raise UploadError(tr("not a recognized plant export: the header ({header}) matches none of resultados, "
                             "falhas, status", header=", ".join(present[:10]) or tr("empty")), file=name)
    parts = []
    if missing:
        parts.append(tr("missing column(s) {columns}", columns=", ".join(missing)))
    if unknown:
        parts.append(tr("unknown column(s) {columns}", columns=", ".join(unknown)))
    raise UploadError(tr("looks like a {kind} export but has {found}; expected {expected}", kind=kind,
                         found=f" {tr('and')} ".join(parts), expected=", ".join(KINDS[kind])), file=name)


# -- csv ------------------------------------------------------------------------------------------

class _NotUtf8(Exception):
    """A byte past the first 64 KiB that the encoding guessed from them (UTF-8) cannot decode."""


def _csv_blocks(source: Source, name: str, fmt: str, window: tuple[dt.datetime, dt.datetime],
                progress: Progress | None) -> Iterator[_Block | None]:
    """The normalized blocks of a csv; ``None`` before a second reading from the start voids the first."""
    head = _head_bytes(source, fmt, name)
    if b"\x00" in head:
        raise UploadError(tr("binary content, not a text CSV or an xlsx workbook"), file=name)
    encoding = _encoding(head, name)
    text = head.decode(encoding, errors="replace")
    first_line = text.splitlines()[0] if text.strip() else ""
    if not first_line.strip():
        raise UploadError(tr("the first line is empty: expected a header naming the columns"), file=name)
    delimiter = max(";,\t|", key=first_line.count)
    header = _clean_header(next(csv.reader([first_line], delimiter=delimiter)))
    kind = recognize_kind(header, name)
    names = [f"__index_{i}" if _is_index_column(h) else h for i, h in enumerate(header)]

    def parse(encoding: str) -> Iterator[_Block | None]:
        try:
            yield from _parse_csv(source, name, fmt, kind, names, encoding, delimiter, window, progress,
                                  typed_dates=True)
        except pa.ArrowInvalid:
            # Some DATA value is not a date text (an Excel serial number, or a bad value): read it again as text.
            yield None
            yield from _parse_csv(source, name, fmt, kind, names, encoding, delimiter, window, progress,
                                  typed_dates=False)

    try:
        yield from parse(encoding)
    except _NotUtf8:
        if not head.isascii():
            raise UploadError(tr("mixes UTF-8 text with bytes that are not UTF-8: save it again in one encoding"),
                              file=name) from None
        # Plain ASCII until past the first 64 KiB: a cp1252 file whose first accent comes late.
        yield None
        yield from parse("cp1252")


def _parse_csv(source: Source, name: str, fmt: str, kind: str, names: list[str], encoding: str, delimiter: str,
               window: tuple[dt.datetime, dt.datetime], progress: Progress | None, *,
               typed_dates: bool) -> Iterator[_Block]:
    """Stream the CSV in blocks, normalizing each; dates parsed by Arrow when ``typed_dates``.

    Yields at least one block (empty for a csv without rows), so that its kind is known.
    Raises :class:`_NotUtf8` when UTF-8 text turns out not to be UTF-8 past the sniffed head.
    """
    import pyarrow.csv as pacsv

    types = {n: pa.string() for n in names}
    if typed_dates:
        types["DATA"] = pa.timestamp("ms")
    read_opts = pacsv.ReadOptions(column_names=names, skip_rows=1, encoding=encoding,
                                  block_size=_CSV_BLOCK_BYTES)
    parse_opts = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    convert_opts = pacsv.ConvertOptions(column_types=types, timestamp_parsers=[pacsv.ISO8601, *_DATE_FORMATS],
                                        include_columns=[n for n in names if not n.startswith("__index_")],
                                        strings_can_be_null=False, quoted_strings_can_be_null=False)
    done = 0
    try:
        raw = pa.py_buffer(source) if isinstance(source, bytes) else os.fspath(source)
        with pa.input_stream(raw, compression="gzip" if fmt == "csv.gz" else None) as stream:
            reader = pacsv.open_csv(stream, read_options=read_opts, parse_options=parse_opts,
                                    convert_options=convert_opts)
            for batch in reader:
                rows = _normalize(pa.Table.from_batches([batch]), kind, name, None, window, first_row=done + 2)
                done += batch.num_rows
                if progress:
                    progress(f"{name}: {done:,} rows read")
                yield _Block(kind, None, rows)
    except pa.ArrowInvalid as exc:
        if typed_dates and "timestamp" in str(exc):
            raise
        if encoding == "utf-8" and "invalid UTF8" in str(exc):
            raise _NotUtf8 from None
        raise UploadError(tr("cannot be read as CSV ({problem})", problem=_short(exc)), file=name) from None
    except UnicodeDecodeError as exc:
        problem = tr("text is neither UTF-8 nor cp1252") if encoding == "cp1252" else \
            tr("text marked as UTF-8 is not UTF-8")
        raise UploadError(tr("{problem} (undecodable byte {byte})", problem=problem,
                             byte=f"0x{exc.object[exc.start]:02x}"), file=name) from None
    except (OSError, EOFError) as exc:
        raise UploadError(tr("cannot be read as CSV ({problem})", problem=_short(exc)), file=name) from None
    if not done:
        yield _Block(kind, None, encoded_schema(kind).empty_table())


def _head_bytes(source: Source, fmt: str, name: str) -> bytes:
    """The first 64 KiB of the file's text (decompressed for csv.gz)."""
    if fmt != "csv.gz":
        return _head(source, 1 << 16)
    import zlib

    try:
        return zlib.decompressobj(wbits=31).decompress(_head(source, 1 << 22), 1 << 16)
    except zlib.error as exc:
        raise UploadError(tr("gzip data is corrupt ({problem})", problem=exc), file=name) from None


def _encoding(head: bytes, name: str) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the 64 KiB window
            return "utf-8"
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError as exc:
        raise UploadError(tr("text is neither UTF-8 nor cp1252 (undecodable byte {byte} at offset {offset})",
                             byte=f"0x{head[exc.start]:02x}", offset=exc.start), file=name) from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


# -- xlsx -----------------------------------------------------------------------------------------

def _xlsx_blocks(source: Source, name: str, window: tuple[dt.datetime, dt.datetime],
                 progress: Progress | None) -> Iterator[_Block]:
    """The normalized blocks of every sheet of a workbook, at least one (perhaps empty) per sheet read."""
    from python_calamine import CalamineWorkbook

    try:
        if isinstance(source, bytes):
            book = CalamineWorkbook.from_filelike(io.BytesIO(source))
        else:
            book = CalamineWorkbook.from_path(os.fspath(source))
        sheet_names = list(book.sheet_names)
    except Exception as exc:  # calamine raises its own error types for broken archives
        raise UploadError(tr("not a readable xlsx workbook, truncated or damaged ({problem})", problem=_short(exc)),
                          file=name) from None
    kind = None
    columns: list[int] = []
    done = 0
    for sheet_name in sheet_names:
        try:
            sheet = book.get_sheet_by_name(sheet_name)
            rows = sheet.iter_rows()  # from Excel row 1, columns from the used range's first
        except Exception as exc:
            raise UploadError(tr("sheet cannot be read ({problem})", problem=_short(exc)), file=name,
                              sheet=sheet_name) from None
        peek = []
        for row in rows:
            peek.append(row)
            if len(peek) >= _HEADER_SCAN_ROWS:
                break
        header_at = _find_header(peek)
        if header_at is not None:
            header = _clean_header(peek[header_at])
            found = recognize_kind(header, name)
            if kind is not None and found != kind:
                raise UploadError(tr("holds a {found} sheet after {kind} sheets", found=found, kind=kind), file=name,
                                  sheet=sheet_name)
            kind = found
            columns = [i for i, h in enumerate(header) if h and not _is_index_column(h)]
            names = [header[i] for i in columns]
            body_start = header_at + 1
        elif kind is None:
            if not any(_non_empty(r) for r in peek):
                continue
            raise UploadError(tr("no header row naming KNR found in the first {rows} rows", rows=_HEADER_SCAN_ROWS),
                              file=name, sheet=sheet_name)
        else:
            body_start = 0
        row_offset = body_start + 1  # Excel row number of the body's first row
        body = itertools.chain(peek[body_start:], rows)
        empty = True
        for cells, numbers in _chunks(body, row_offset, key=columns[0]):
            with _without_gc():
                table = _cells_to_table(cells, numbers, columns, names, name, sheet_name)
            del cells
            normalized = _normalize(table, kind, name, sheet_name, window, first_row=numbers[0],
                                    row_numbers=table.column("__row"))
            done += len(numbers)
            if progress:
                progress(f"{name} [{sheet_name}]: {done:,} rows read")
            empty = False
            yield _Block(kind, sheet_name, normalized)
        if empty:
            yield _Block(kind, sheet_name, encoded_schema(kind).empty_table())
    if kind is None:
        raise UploadError(tr("the workbook has no sheet with data"), file=name)


def _find_header(rows: list[list]) -> int | None:
    for i, row in enumerate(rows):
        cells = set(_clean_header(row))
        if "KNR" in cells and len(cells & {c for cols in COLUMNS.values() for c in cols}) >= 3:
            return i
    return None


def _non_empty(row) -> bool:
    return any(c not in (None, "") and not (isinstance(c, str) and not c.strip()) for c in row)


def _chunks(rows: Iterator[list], first_row: int, *, key: int) -> Iterator[tuple[list[tuple], list[int]]]:
    """The non-empty rows, at most :data:`_CHUNK_ROWS` at a time, as columns (tuples of cells, the
    rows padded to one width) with their Excel row numbers; ``key`` is a column that is empty in
    few rows, so that only those are looked at cell by cell."""
    number = first_row
    while True:
        with _without_gc():
            batch = list(itertools.islice(rows, _CHUNK_ROWS))
            if not batch:
                return
            numbers = list(range(number, number + len(batch)))
            number += len(batch)
            width = max(key + 1, *map(len, batch))
            if any(len(row) != width for row in batch):
                batch = [row + [""] * (width - len(row)) for row in batch]
            columns = list(zip(*batch))
            empty = {i for i, cell in enumerate(columns[key]) if cell in ("", None) and not _non_empty(batch[i])}
            if empty:
                keep = [i for i in range(len(batch)) if i not in empty]
                columns = [tuple(column[i] for i in keep) for column in columns]
                numbers = [numbers[i] for i in keep]
            del batch
        if numbers:
            yield columns, numbers


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    """Python's cycle collector paused: reading a workbook makes millions of short-lived lists and
    tuples, none in a cycle, which set it off again and again for nothing (a fifth of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):  # an integer as its digits, as a csv of the same export holds it
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        # Excel keeps times as fractions of a day: round to the millisecond before seconds are cut.
        value = value + dt.timedelta(microseconds=500)
        return value.replace(microsecond=value.microsecond // 1000 * 1000).isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _cells_to_table(cells: list[tuple], numbers: list[int], columns: list[int], names: list[str],
                    name: str, sheet: str) -> pa.Table:
    """The header's columns of a chunk (:func:`_chunks`) as Arrow columns, and ``__row``, each row's
    Excel row number; a value in a column beyond the header's is refused."""
    width = max(columns) + 1
    arrays = {}
    for col, col_name in zip(columns, names):
        arrays[col_name] = _column(cells[col] if col < len(cells) else ("",) * len(numbers), dates=col_name == "DATA")
    filled = [i for extra in cells[width:] for i, cell in enumerate(extra) if cell not in ("", None)
              and _non_empty([cell])]
    if filled:
        first = min(filled)
        value = next(cell for cell in (extra[first] for extra in cells[width:]) if _non_empty([cell]))
        raise UploadError(tr("has a value beyond the header's last column ({column})", column=names[-1]), file=name,
                          sheet=sheet, row=numbers[first], value=value)
    arrays["__row"] = pa.array(numbers, type=pa.int64())
    return pa.table(arrays)


def _column(cells: list, *, dates: bool) -> pa.Array:
    """Cells as an Arrow column: real date cells as timestamps, everything else as text.

    A number among the dates stays text (Arrow would take it for microseconds since 1970): it is
    read as an Excel serial date when the column is normalized.
    """
    if dates:
        kinds = set(map(type, cells))
        if kinds == {dt.datetime}:
            return pa.array(cells, type=pa.timestamp("us"))
        if kinds <= {dt.datetime, dt.date}:  # calamine gives a date, not a datetime, for exactly midnight
            return pa.array([dt.datetime.combine(c, dt.time()) if type(c) is dt.date else c for c in cells],
                            type=pa.timestamp("us"))
    else:
        try:
            return pa.array(cells, type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
        if set(map(type, cells)) == {float}:
            numbers = np.array(cells, dtype=np.float64)
            if (np.abs(numbers) < 2**53).all() and (numbers == np.round(numbers)).all():
                return pa.array(numbers.astype(np.int64)).cast(pa.string())  # an integer's exact digits
    return pa.array([c if type(c) is str else _cell_text(c) for c in cells], type=pa.string())


# -- normalization and checks -------------------------------------------------------------------

def _normalize(table: pa.Table, kind: str, name: str, sheet: str | None, window: tuple[dt.datetime, dt.datetime],
               *, first_row: int, row_numbers: pa.ChunkedArray | None = None) -> pa.Table:
    """Strip, unify numbers and dates, and check KNR and DATA (a date inside ``window``) of every row.

    Each text column is normalized through its dictionary of distinct values and stays
    dictionary-encoded (``encoded_schema(kind)``): the plant's columns repeat few values, so this
    is much faster than working row by row.
    """
    out = {}
    for col in COLUMNS[kind]:
        if col == "DATA":
            continue
        if col not in table.column_names:
            out[col] = pa.DictionaryArray.from_arrays(pa.nulls(table.num_rows, pa.int32()), pa.array([], pa.string()))
            continue
        out[col] = by_dictionary(table[col], lambda values, col=col: _clean(values, kind, col))

    def row_of(i: int) -> int:
        return row_numbers[i].as_py() if row_numbers is not None else first_row + i

    knr = out["KNR"]
    good = pc.fill_null(pc.match_substring_regex(knr.dictionary, KNR_PATTERN), False)
    if knr.null_count or not pc.all(good).as_py():  # every value of the dictionary is some row's
        i = pc.index(pc.fill_null(pc.take(good, knr.indices), False), False).as_py()
        raise UploadError(tr("malformed KNR: expected YYYY-NNNNNNN (e.g. 2023-2056234)"), file=name, sheet=sheet,
                          row=row_of(i), column="KNR", value=knr[i].as_py())
    raw_dates = table["DATA"].combine_chunks()
    if pa.types.is_timestamp(raw_dates.type):
        # Excel and Arrow keep fractions: round to the millisecond, then drop the fraction.
        dates = pc.cast(pc.floor_temporal(pc.round_temporal(raw_dates, unit="millisecond"), unit="second"),
                        pa.timestamp("s"))
    else:
        dates = parse_dates(pc.utf8_trim_whitespace(raw_dates))

    def raw_of(i: int) -> str:
        raw = raw_dates[i].as_py()
        return raw.isoformat(sep=" ") if isinstance(raw, dt.datetime) else raw.strip()

    if dates.null_count:
        i = pc.index(pc.is_null(dates), True).as_py()
        value = "" if pa.types.is_timestamp(raw_dates.type) else raw_of(i)
        problem = tr("empty DATA") if not value else tr("DATA is not a date and time (ISO, day-first or an Excel "
                                                         "serial day)")
        raise UploadError(problem, file=name, sheet=sheet, row=row_of(i), column="DATA", value=value or None)
    start, end = (pa.scalar(bound, pa.timestamp("s")) for bound in window)
    outside = pc.or_(pc.less(dates, start), pc.greater(dates, end))
    if pc.any(outside).as_py():
        i = pc.index(outside, True).as_py()
        raise UploadError(tr("DATA {when} lies outside the plausible window {start} to {end}: correct the export (or "
                             "the settings dates_from, dates_ahead_days)", when=dates[i].as_py(),
                             start=f"{start.as_py():%Y-%m-%d}", end=f"{end.as_py():%Y-%m-%d %H:%M}"),
                          file=name, sheet=sheet, row=row_of(i), column="DATA", value=raw_of(i))
    out["DATA"] = dates
    return pa.table([out[c] for c in COLUMNS[kind]], schema=encoded_schema(kind))


def by_dictionary(values: pa.ChunkedArray | pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.DictionaryArray:
    """Apply ``fn`` to the distinct values only: the rows' indices into the results.

    Two distinct values may give the same result (``80.0`` and ``80``); the dictionary then holds
    it twice, which decoding, sorting by value and :meth:`pyarrow.Table.unify_dictionaries` allow.
    """
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    return pa.DictionaryArray.from_arrays(encoded.indices, fn(encoded.dictionary))


def _clean(values: pa.Array, kind: str, col: str) -> pa.Array:
    values = pc.utf8_trim_whitespace(values)
    if col in ("HALLE", "STATUS") and kind != "resultados":
        return pc.utf8_upper(values)
    if kind == "resultados" and col in ("ID", "STATUS", "VALUE_ID", "VALUE"):
        return number_text(values)
    if kind == "resultados" and col == "NAME":
        return _test_code(values)
    if col == "S_GROUP_ID":
        return number_text(values)
    return values


def number_text(values: pa.Array) -> pa.Array:
    """Numbers as the text of their number; other text kept.

    An integer, of any length, keeps its exact digits without sign ``+``, leading zeros or a
    zero fraction (``+080.00`` -> ``80``, ``-0`` -> ``0``), so that long ids never merge through
    floating point. Other numbers are their shortest float text (``12,50`` -> ``12.5``,
    ``1e3`` -> ``1000``).
    """
    values = _decimal_point(values)
    numeric = pc.fill_null(pc.match_substring_regex(values, _NUMBER), False)
    if not pc.any(numeric).as_py():
        return values
    as_number = pc.cast(pc.cast(pc.if_else(numeric, values, "0"), pa.float64()), pa.string())
    out = pc.if_else(numeric, as_number, values)
    integer = pc.fill_null(pc.match_substring_regex(values, _INTEGER), False)
    if not pc.any(integer).as_py():
        return out
    digits = pc.replace_substring_regex(pc.filter(values, integer), r"^\+?(-?)0*(\d+?)(\.0*)?$", r"\1\2")
    return pc.replace_with_mask(out, integer, pc.replace_substring_regex(digits, r"^-0$", "0"))


def _decimal_point(values: pa.Array) -> pa.Array:
    """A number written with a decimal comma (``12,5``) as one with a point; other text kept."""
    comma = pc.fill_null(pc.match_substring_regex(values, _COMMA_NUMBER), False)
    return pc.if_else(comma, pc.replace_substring(values, ",", "."), values)


def _test_code(values: pa.Array) -> pa.Array:
    """Test codes keep their leading zeros even when a workbook stored them as numbers."""
    values = number_text(values)
    digits = pc.fill_null(pc.match_substring_regex(values, r"^\d{1,5}$"), False)
    return pc.if_else(digits, pc.utf8_lpad(values, width=6, padding="0"), values)


def parse_dates(values: pa.Array) -> pa.Array:
    """Timestamps to the second from ISO or day-first text, or from an Excel serial day number
    (``45432.5``: that is how Excel stores a date); null where none of the forms fits."""
    result = pc.strptime(values, format=_DATE_FORMATS[0], unit="s", error_is_null=True)
    if not result.null_count:
        return result
    missing = pc.is_null(result)
    text = pc.filter(values, missing)
    rest = _excel_serial_dates(text)
    text = pc.replace_substring_regex(text, r"(\d)T(\d)", r"\1 \2")
    text = pc.replace_substring_regex(text, r"(:\d\d)[.,]\d+$", r"\1")
    for fmt in _DATE_FORMATS:
        if not rest.null_count:
            break
        rest = pc.coalesce(rest, pc.strptime(text, format=fmt, unit="s", error_is_null=True))
    return pc.replace_with_mask(result, missing, rest)


def _excel_serial_dates(values: pa.Array) -> pa.Array:
    """Timestamps to the second from Excel serial day numbers as text (days since 1899-12-30, the
    fraction the time of day), rounded to the millisecond then cut to the second like a date cell;
    null for text that is not a number, or a number outside Excel's dates (0 to 9999-12-31)."""
    values = _decimal_point(values)
    numeric = pc.fill_null(pc.match_substring_regex(values, _NUMBER), False)
    days = pc.cast(pc.if_else(numeric, values, pa.scalar(None, pa.string())), pa.float64())
    in_range = pc.and_(pc.greater_equal(days, 0), pc.less(days, _EXCEL_LAST_DAY + 1))
    days = pc.if_else(in_range, days, pa.scalar(None, pa.float64()))
    ms = pc.round(pc.multiply(pc.subtract(days, _EXCEL_EPOCH_DAYS), 86_400_000.0))
    stamps = pc.cast(pc.cast(ms, pa.int64()), pa.timestamp("ms"))
    return pc.cast(pc.floor_temporal(stamps, unit="second"), pa.timestamp("s"))


def read_period_text(period: tuple[dt.datetime, dt.datetime]) -> str:
    """A period as ``YYYY-MM-DD HH:MM to YYYY-MM-DD HH:MM``."""
    return f"{period[0]:%Y-%m-%d %H:%M} to {period[1]:%Y-%m-%d %H:%M}"


