"""Shared fixtures: lakes on memory:// and on a local folder, and small uploads in the plant's layouts."""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path

import fsspec
import pytest

from kafer.config import load_settings
from kafer.lake import Lake

# Browser tests: Debian's Chromium for the session, a page per test, a screenshot of a failing page.
from browser import browser, page, pytest_runtest_makereport  # noqa: F401  (fixtures and hook, see tests/browser.py)
from worlds import months  # noqa: F401  (a fixture: small monthly uploads, see tests/worlds.py)


def _clear_memory() -> None:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")


@pytest.fixture
def memory_lake():
    _clear_memory()
    yield Lake("memory://kafer-test")
    _clear_memory()


@pytest.fixture(params=["memory", "local"])
def lake(request, tmp_path):
    """The same test on memory:// and on a local folder (which, unlike memory, needs folders made)."""
    if request.param == "memory":
        _clear_memory()
        yield Lake("memory://kafer-test")
        _clear_memory()
    else:
        yield Lake(str(tmp_path / "lake"))


@pytest.fixture
def settings():
    return load_settings()


def lake_snapshot(lake: Lake) -> dict[str, bytes]:
    """Every key of the lake with its bytes, to show a refused upload changed nothing."""
    return {key: lake.read_bytes(key) for key in lake.list("")}


def write_xlsx(path: Path, header: list[str], rows: list[list], *, sheet_rows: int | None = None,
               top: str = "plain") -> Path:
    """A workbook in the plant's layout: row 1 blank, column A empty, header at B2 (or a variant),
    continuation sheets without a header."""
    import datetime as dt

    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"created": dt.datetime(2024, 6, 1)})  # same rows, same bytes
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss.000"})
    sheet_rows = sheet_rows or len(rows) or 1
    chunks = [rows[i:i + sheet_rows] for i in range(0, len(rows), sheet_rows)] or [[]]
    for n, chunk in enumerate(chunks):
        sheet = book.add_worksheet("Relatório 1" if n == 0 else f"Relatório 1({n})")
        r = 0
        if n == 0:
            if top == "count":
                sheet.write_number(1, 1, len({row[0] for row in rows}))
                r = 2
            elif top == "title":
                sheet.write_string(1, 3, "Relatório 1")
                r = 3
            else:
                r = 1
            sheet.write_row(r, 1, header)
            r += 1
        for row in chunk:
            for c, value in enumerate(row):
                if isinstance(value, dt.datetime):
                    sheet.write_datetime(r, c + 1, value, stamp)
                elif isinstance(value, (int, float)):
                    sheet.write_number(r, c + 1, value)
                elif value not in (None, ""):
                    sheet.write_string(r, c + 1, str(value))
            r += 1
    book.close()
    return path


def write_csv(path: Path, header: list[str], rows: list[list], *, sep: str = ",", encoding: str = "utf-8",
              index: bool = False, dayfirst: bool = False) -> Path:
    """A CSV as the plant's tools wrote them (optionally gzip, pandas index, day-first dates)."""
    import datetime as dt

    def cell(value):
        if isinstance(value, dt.datetime):
            return f"{value.day}/{value.month}/{value.year} {value:%H:%M:%S}" if dayfirst else f"{value:%Y-%m-%d %H:%M:%S}"
        return "" if value is None else str(value)

    lines = [sep.join(([""] if index else []) + header)]
    lines += [sep.join(([str(i)] if index else []) + [cell(v) for v in row]) for i, row in enumerate(rows)]
    data = ("\n".join(lines) + "\n").encode(encoding)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 for the session, with bucket ``s3.BUCKET``; the environment points
    botocore at it (see tests/s3.py), so child processes reach it too."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import s3

    server, endpoint = s3.start_server()
    with pytest.MonkeyPatch.context() as env:
        for name in s3.FOREIGN:
            env.delenv(name, raising=False)
        for name, value in s3.environment(endpoint, tmp_path_factory.mktemp("aws")).items():
            env.setenv(name, value)
        s3.forget_clients()
        fsspec.filesystem("s3").mkdir(s3.BUCKET)
        yield endpoint
        s3.forget_clients()
    server.shutdown()


@pytest.fixture
def s3_lake(s3_endpoint):
    """A lake in its own prefix of the test bucket (nothing to clear)."""
    import s3

    return Lake(f"s3://{s3.BUCKET}/lake-{uuid.uuid4().hex[:12]}")
