"""Reading the plant's exports in every real layout, and refusing malformed ones with a precise message."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

import pyarrow.compute as pc
import pytest

from conftest import write_csv, write_xlsx
import kafer.readers as readers
from kafer.errors import ConfigError, UploadError
from kafer.readers import KINDS, not_an_export, plausible_dates, read_export, recognize_kind

T = dt.datetime
# Real rows (peer-samples g01/g02), one car, including the double-recorded defect and a padded hall.
FALHAS = [
    ["2023-2056234", "T-CROSS", "2R2R", "DHS", "HCEQS506", "4013334", "ZP7 ", "PARALAMA DIANTEIRO 01. AMASSADO",
     T(2024, 5, 20, 21, 31, 51, 992000)],
    ["2023-2056234", "T-CROSS", "2R2R", "DHS", "HCEQS506", "4013334", "ZP7", "Paralama dianteiro 01. amassado",
     T(2024, 5, 20, 21, 31, 51, 992000)],
    ["2023-2056234", "T-CROSS", "2R2R", "DHS", "PCEQS620", "2058570", "ZP6 ", "MÓDULO DO ACC (13) PEÇA INCORRETA ¨",
     T(2024, 5, 20, 20, 4, 55, 534000)],
    ["2023-3896001", "T-CROSS", "0Q0Q", "   ", "HCEQS203", "2043971", "ROD ", "Console central Ruído (-)",
     T(2024, 6, 5, 17, 38, 52)],
]
RESULTADOS = [
    ["2023-2056234", "012001", 1, 10, "", "", "", T(2024, 5, 16, 13, 41, 25)],
    ["2023-2056234", "042000", 1, 10, "Deg       ", "5.0", "15601" + " " * 45, T(2024, 5, 16, 13, 21, 3)],
    ["2023-5076008", "SECTION_ZP8_00000001", 718, 13, "V         ", "80.0", "12.479" + " " * 44, T(2024, 2, 2, 8, 3, 3)],
    ["2024-0626325", "324000", 2, 10, "Grad      ", "1.0", "90.59" + " " * 45, T(2024, 2, 2, 6, 8, 47)],
]
STATUS = [["2023-2016173", "G620", T(2023, 6, 6, 7, 50, 27)], ["2023-2016173", "M620", T(2023, 6, 6, 7, 50, 27)],
          ["2023-2026032", "G620", T(2023, 6, 20, 17, 35, 51)]]


def read(path):
    return read_export(path.read_bytes(), path.name)


@pytest.mark.parametrize("top", ["plain", "count", "title"])
def test_xlsx_header_found_wherever_it_is(tmp_path, top):
    export = read(write_xlsx(tmp_path / "FALHAS.xlsx", list(KINDS["falhas"]), FALHAS, top=top))
    assert export.kind == "falhas" and export.rows == 4
    assert export.table["HALLE"].to_pylist() == ["ZP7", "ZP7", "ZP6", "ROD"]
    assert export.table["DATA"][0].as_py() == T(2024, 5, 20, 21, 31, 51)  # fraction dropped, not rounded


def test_every_sheet_is_read_and_continuation_sheets_have_no_header(tmp_path):
    rows = [[f"2024-01{i % 7}{i:04d}", "R100", T(2024, 1, 1) + dt.timedelta(minutes=i)] for i in range(25)]
    export = read(write_xlsx(tmp_path / "data.xlsx", ["KNR", "STATUS", "DATA"], rows, sheet_rows=10))
    assert export.sheets == ("Relatório 1", "Relatório 1(1)", "Relatório 1(2)")
    assert export.rows == 25 and export.kind == "status"
    assert export.table["KNR"].to_pylist() == [r[0] for r in rows]


def test_kind_comes_from_columns_not_the_name(tmp_path):
    export = read(write_csv(tmp_path / "falhas_maybe.csv", list(KINDS["resultados"]), RESULTADOS))
    assert export.kind == "resultados"


def test_csv_variants_read_the_same_rows(tmp_path):
    plain = read(write_csv(tmp_path / "a.csv", list(KINDS["falhas"]), FALHAS))
    variants = [
        write_csv(tmp_path / "b.csv.gz", list(KINDS["falhas"]), FALHAS, index=True),
        write_csv(tmp_path / "c.csv", list(KINDS["falhas"]), FALHAS, sep=";", encoding="cp1252", dayfirst=True),
        write_xlsx(tmp_path / "d.xlsx", list(KINDS["falhas"]), FALHAS),
    ]
    for path in variants:
        export = read(path)
        assert export.table.equals(plain.table), path.name


def test_numbers_are_the_text_of_their_number_and_codes_keep_zeros(tmp_path):
    export = read(write_xlsx(tmp_path / "r.xlsx", list(KINDS["resultados"]), RESULTADOS))
    assert export.table["VALUE_ID"].to_pylist() == ["", "5", "80", "1"]
    assert export.table["VALUE"].to_pylist() == ["", "15601", "12.479", "90.59"]
    assert export.table["UNIT"].to_pylist() == ["", "Deg", "V", "Grad"]
    assert export.table["NAME"].to_pylist()[:2] == ["012001", "042000"]
    assert export.table["ID"].to_pylist() == ["1", "1", "718", "2"]
    csv = read(write_csv(tmp_path / "r.csv", list(KINDS["resultados"]), RESULTADOS))
    assert csv.table.equals(export.table)


def test_long_integers_keep_their_exact_text(tmp_path):
    rows = [r[:6] + [value] + r[7:] for r, value in zip(RESULTADOS, ["123456789012345678", "123456789012345679",
                                                                     "+0080.00", "-0"])]
    export = read(write_csv(tmp_path / "r.csv", list(KINDS["resultados"]), rows))
    assert export.table["VALUE"].to_pylist() == ["123456789012345678", "123456789012345679", "80", "0"]
    assert read(write_xlsx(tmp_path / "r.xlsx", list(KINDS["resultados"]), rows)).table.equals(export.table)


def test_a_whole_number_cell_reads_as_the_digits_a_csv_holds(tmp_path):
    rows = [r[:5] + [10 ** 16] + r[6:] for r in RESULTADOS]
    xlsx = read(write_xlsx(tmp_path / "r.xlsx", list(KINDS["resultados"]), rows))
    assert xlsx.table["VALUE_ID"].to_pylist() == ["10000000000000000"] * 4
    assert read(write_csv(tmp_path / "r.csv", list(KINDS["resultados"]), rows)).table.equals(xlsx.table)


def excel_serial(moment: dt.datetime) -> float:
    """How Excel stores a date: days since 1899-12-30, the fraction the time of day."""
    return (moment - T(1899, 12, 30)) / dt.timedelta(days=1)


def test_a_number_in_an_xlsx_data_cell_is_an_excel_serial_date(tmp_path):
    moments = [T(2024, 5, 20, 21, 31, 51, 992000), T(2024, 5, 20, 12), T(2024, 5, 21, 0, 0, 0, 999600)]
    rows = [["2023-2016173", "G620", moments[0]]] + [["2023-2016174", "M620", excel_serial(m)] for m in moments]
    export = read(write_xlsx(tmp_path / "s.xlsx", ["KNR", "STATUS", "DATA"], rows))
    # Rounded to the millisecond, then the fraction of a second dropped, as for a date cell.
    assert export.table["DATA"].to_pylist() == [T(2024, 5, 20, 21, 31, 51), T(2024, 5, 20, 21, 31, 51),
                                                T(2024, 5, 20, 12), T(2024, 5, 21, 0, 0, 1)]
    numbers_only = read(write_xlsx(tmp_path / "n.xlsx", ["KNR", "STATUS", "DATA"], rows[1:]))
    assert numbers_only.table.equals(export.table.slice(1))


@pytest.mark.parametrize("serial", ["45432.5", "45432,5"])
def test_a_number_in_a_csv_data_column_is_an_excel_serial_date(tmp_path, serial):
    rows = [["2023-2016173", "G620", T(2024, 5, 20, 21, 31, 51)], ["2023-2016173", "M620", serial]]
    export = read(write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA"], rows, sep=";"))
    assert export.table["DATA"].to_pylist() == [T(2024, 5, 20, 21, 31, 51), T(2024, 5, 20, 12)]


@pytest.mark.parametrize("fmt, date, shown", [
    ("xlsx", T(1970, 1, 1), "'1970-01-01 00:00:00'"),
    ("xlsx", 0, "'0'"),  # Excel's day 0: 1899-12-30
    ("csv", "2099-05-20 08:00:00", "'2099-05-20 08:00:00'"),
    ("csv", "80000.5", "'80000.5'"),  # Excel day 80000: 2119-01-11
])
def test_a_date_outside_the_plausible_window_is_refused(tmp_path, fmt, date, shown):
    rows = [list(r) for r in STATUS * 3]
    rows[7][2] = date
    path = tmp_path / f"s.{fmt}"
    if fmt == "xlsx":
        write_xlsx(path, ["KNR", "STATUS", "DATA"], rows, sheet_rows=5)
    else:
        write_csv(path, ["KNR", "STATUS", "DATA"], rows)
    message = refused(path)
    assert "column DATA" in message and shown in message and "plausible window 2000-01-01" in message
    # The 8th data row: Excel row 3 of the second sheet (no header there), line 9 of the csv.
    assert ("sheet 'Relatório 1(1)', row 3" if fmt == "xlsx" else "row 9") in message


def test_the_date_window_is_the_callers_and_ends_tomorrow(tmp_path):
    def status_at(name, moment):
        return write_csv(tmp_path / name, ["KNR", "STATUS", "DATA"], [["2023-2016173", "G620", moment]])

    data = status_at("s.csv", T(1990, 1, 1)).read_bytes()
    assert read_export(data, "s.csv", dates_within=plausible_dates("1980-01-01")).period[0] == T(1990, 1, 1)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert read(status_at("soon.csv", now + dt.timedelta(hours=12))).rows == 1
    assert "outside the plausible window" in refused(status_at("later.csv", now + dt.timedelta(days=2)))
    with pytest.raises(ConfigError, match="dates_from"):
        plausible_dates("20/05/2000")


def test_falhas_with_s_group_id(tmp_path):
    header = list(KINDS["falhas"][:-1]) + ["S_GROUP_ID", "DATA"]
    rows = [r[:-1] + [sg, r[-1]] for r, sg in zip(FALHAS, ["5", 4, "#MULTIVALUE", -2])]
    export = read(write_xlsx(tmp_path / "FALHAS_PREDICT 1.xlsx", header, rows))
    assert export.kind == "falhas"
    assert export.table["S_GROUP_ID"].to_pylist() == ["5", "4", "#MULTIVALUE", "-2"]


def test_a_hash_the_caller_has_is_not_computed_again(tmp_path, monkeypatch):
    data = write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA"], STATUS).read_bytes()
    monkeypatch.setattr(hashlib, "sha256", None)
    assert read_export(data, "s.csv", sha256="f" * 64).sha256 == "f" * 64


def test_status_codes_and_periods(tmp_path):
    export = read(write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA"], STATUS, index=True))
    assert export.period == (T(2023, 6, 6, 7, 50, 27), T(2023, 6, 20, 17, 35, 51))
    assert pc.count_distinct(export.table["KNR"]).as_py() == 2


# -- malformed uploads ---------------------------------------------------------------------------

def refused(path) -> str:
    with pytest.raises(UploadError) as info:
        read(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    return message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty" in refused(path)


def test_not_an_xlsx(tmp_path):
    path = tmp_path / "STATUS.xlsx"
    path.write_bytes(b"KNR,STATUS,DATA\n")
    assert "not an Excel workbook" in refused(path)


def test_truncated_xlsx(tmp_path):
    whole = write_xlsx(tmp_path / "w.xlsx", ["KNR", "STATUS", "DATA"], STATUS).read_bytes()
    path = tmp_path / "cut.xlsx"
    path.write_bytes(whole[: len(whole) // 2])
    assert "xlsx" in refused(path)


def test_binary_garbage(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 40)
    assert "binary" in refused(path)


def test_undecodable_text(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"KNR,STATUS,DATA\n2023-2016173,G\x81\x8d,2023-06-06 07:50:27\n")
    assert "UTF-8" in refused(path)


@pytest.mark.parametrize("suffix", ["csv", "csv.gz"])
def test_cp1252_whose_first_accent_comes_after_64_kib(tmp_path, suffix):
    ascii_rows = [[f"2023-20{i:05d}"] + FALHAS[0][1:] for i in range(1000)]
    rows = ascii_rows + [FALHAS[3]]
    path = write_csv(tmp_path / f"f.{suffix}", list(KINDS["falhas"]), rows, sep=";", encoding="cp1252")
    text = gzip.decompress(path.read_bytes()) if suffix == "csv.gz" else path.read_bytes()
    assert text.index("í".encode("cp1252")) > 1 << 16 and text[: 1 << 16].isascii()
    export = read(path)
    assert export.rows == 1001 and export.table["FALHA"][-1].as_py() == "Console central Ruído (-)"


def test_bytes_neither_utf8_nor_cp1252_after_64_kib_are_refused(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"KNR,STATUS,DATA\n" + b"2023-2016173,G620,2023-06-06 07:50:27\n" * 2000
                     + b"2023-2016173,G\x81,2023-06-06 07:50:27\n")
    assert "neither UTF-8 nor cp1252" in refused(path)


def test_utf8_text_with_later_bytes_of_another_encoding_is_refused(tmp_path):
    rows = [FALHAS[3]] + [[f"2023-20{i:05d}"] + FALHAS[0][1:] for i in range(1000)]
    utf8 = write_csv(tmp_path / "a.csv", list(KINDS["falhas"]), rows).read_bytes()
    cp1252 = write_csv(tmp_path / "b.csv", list(KINDS["falhas"]), [FALHAS[3]], encoding="cp1252").read_bytes()
    path = tmp_path / "mixed.csv"
    path.write_bytes(utf8 + cp1252.split(b"\n", 1)[1])
    assert "mixes UTF-8" in refused(path)


def test_missing_column(tmp_path):
    message = refused(write_csv(tmp_path / "r.csv", [c for c in KINDS["resultados"] if c != "UNIT"],
                                [r[:4] + r[5:] for r in RESULTADOS]))
    assert "missing column(s) UNIT" in message and "resultados" in message


def test_unknown_column(tmp_path):
    message = refused(write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA", "COLOR"], [r + ["x"] for r in STATUS]))
    assert "unknown column(s) COLOR" in message


def test_unrecognized_header(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("name,age\nana,3\n")
    assert "not a recognized plant export" in refused(path)


def test_malformed_knr_names_sheet_row_and_value(tmp_path):
    rows = [list(r) for r in STATUS] * 4
    rows[9] = ["2023-201617", "G620", T(2023, 6, 6)]
    message = refused(write_xlsx(tmp_path / "s.xlsx", ["KNR", "STATUS", "DATA"], rows, sheet_rows=5))
    # Row 10 of the data is the 5th row of the second sheet, which has no header: Excel row 5.
    assert "sheet 'Relatório 1(1)'" in message and "row 5" in message and "KNR" in message
    assert "'2023-201617'" in message


def test_empty_rows_are_skipped_and_rows_keep_their_excel_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 3)  # empty rows at a chunk's start, middle and end
    rows = [list(r) for r in STATUS * 3]
    for i in (1, 3, 4, 5):
        rows[i] = [None, None, None]
    export = read(write_xlsx(tmp_path / "s.xlsx", ["KNR", "STATUS", "DATA"], rows))
    assert export.rows == 5 and export.table["KNR"].to_pylist() == [r[0] for r in rows if r[0]]
    rows[7] = ["2023-201617", None, None]  # a row with only a bad KNR is a row: Excel row 10
    message = refused(write_xlsx(tmp_path / "t.xlsx", ["KNR", "STATUS", "DATA"], rows))
    assert "row 10" in message and "'2023-201617'" in message


def test_a_value_beyond_the_headers_last_column_names_its_first_row(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK_ROWS", 4)
    rows = [list(r) + [None, None] for r in STATUS * 3]
    rows[6][3] = 7  # Excel row 9, the column just past DATA
    rows[5][4] = "late"  # Excel row 8, two columns past DATA: the first row holding one
    message = refused(write_xlsx(tmp_path / "s.xlsx", ["KNR", "STATUS", "DATA"], rows))
    assert "beyond the header's last column (DATA)" in message and "row 8 (value 'late')" in message


def test_number_cells_read_alike_whole_or_mixed(tmp_path):
    rows = [r[:5] + [value] + r[6:] for r, value in zip(RESULTADOS, [5.0, -0.0, 2.5, 2.0 ** 60])]
    mixed = read(write_xlsx(tmp_path / "m.xlsx", list(KINDS["resultados"]), rows)).table["VALUE_ID"]
    assert mixed.to_pylist() == ["5", "0", "2.5", str(2 ** 60)]
    rows = [r[:5] + [value] + r[6:] for r, value in zip(RESULTADOS, [5.0, -0.0, 80.0, 2.0 ** 52])]
    whole = read(write_xlsx(tmp_path / "w.xlsx", list(KINDS["resultados"]), rows)).table["VALUE_ID"]
    assert whole.to_pylist() == ["5", "0", "80", str(2 ** 52)]


def test_unparseable_date_names_row(tmp_path):
    rows = [list(r) for r in STATUS]
    rows[1][2] = "31/31/2023 10:00:00"
    message = refused(write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA"], rows))
    assert "row 3" in message and "DATA" in message and "31/31/2023" in message


def test_empty_date(tmp_path):
    rows = [list(r) for r in STATUS]
    rows[2][2] = ""
    assert "empty DATA" in refused(write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA"], rows))


def test_header_only(tmp_path):
    assert "no data rows" in refused(write_csv(tmp_path / "s.csv", ["KNR", "STATUS", "DATA"], []))


def test_corrupt_gzip(tmp_path):
    data = gzip.compress(b"KNR,STATUS,DATA\n" + b"2023-2016173,G620,2023-06-06 07:50:27\n" * 1000)
    path = tmp_path / "s.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    assert "s.csv.gz" in refused(path)


def test_recognize_kind_prefers_exact_match():
    assert recognize_kind(["", "KNR", "STATUS", "DATA"], "x.csv") == "status"
    assert recognize_kind(list(KINDS["resultados"]), "x.csv") == "resultados"


@pytest.mark.parametrize("name, why", [
    ("STATUS.xlsx", None), ("falhas.CSV", None), ("r.csv.gz", None), ("r.tsv", None), ("old.xls", None),
    ("README.txt", "not an export (.txt)"), ("notes.md", "not an export (.md)"),
    ("backup.tar.gz", "not an export (.gz)"), ("Makefile", "not an export (no extension)"),
    ("~$STATUS.xlsx", "Excel's lock file of an open workbook"),
])
def test_not_an_export_by_its_name(name, why):
    assert not_an_export(name) == why
