"""Write a workbook as the plant exports it, as SpreadsheetML built by Arrow's string kernels.

Inline strings, as xlsxwriter's constant-memory mode writes them, some thirty times faster.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import csvfile
from .csvfile import Column

_CHUNK = 200_000
TOP_ROWS = {"plain": 2, "count": 3, "title": 4}

_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE = "http://schemas.openxmlformats.org/package/2006"
_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_STYLES = (f'{_XML}<styleSheet xmlns="{_MAIN}"><numFmts count="2">'
           '<numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>'
           '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss.000"/></numFmts>'
           '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
           '<fills count="2"><fill><patternFill patternType="none"/></fill>'
           '<fill><patternFill patternType="gray125"/></fill></fills>'
           '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
           '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
           '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
           '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
           '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
           '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _escape(values: pa.Array) -> pa.Array:
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        values = pc.replace_substring(values, char, entity)
    return values


def _cell(letter: str, row: int, value, *, text: bool) -> str:
    if text:
        return f'<c r="{letter}{row}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'
    return f'<c r="{letter}{row}"><v>{value}</v></c>'


def write_xlsx(path: Path, header: list[str], cols: list[Column], *, top: str, sheet_rows: int,
                count: int | None) -> None:
    """A workbook as the plant exports it: row 1 blank, column A empty, the header at B2 (or below a
    car count in B2, or below a title in D2), sheets of ``sheet_rows`` rows, continuations headerless."""
    n = len(cols[0].values)
    above = TOP_ROWS[top]
    bounds = [0, min(n, sheet_rows - above)]
    while bounds[-1] < n:
        bounds.append(min(n, bounds[-1] + sheet_rows))
    sheets = list(zip(bounds[:-1], bounds[1:]))
    letters = [chr(ord("B") + j) for j in range(len(cols))]
    names = ["Relatório 1"] + [f"Relatório 1({k})" for k in range(1, len(sheets))]
    head = "".join(_cell(letter, above, h, text=True) for letter, h in zip(letters, header))
    lead = {"plain": "", "count": f'<row r="2">{_cell("B", 2, count, text=False)}</row>',
            "title": f'<row r="2">{_cell("D", 2, names[0], text=True)}</row>'}[top] + f'<row r="{above}">{head}</row>'
    with zipfile.ZipFile(path, "w") as book:
        overrides = "".join(f'<Override PartName="/xl/worksheets/sheet{k}.xml" ContentType="{_TYPE}.worksheet+xml"/>'
                            for k in range(1, len(sheets) + 1))
        book.writestr(_entry("[Content_Types].xml"), (
            f'{_XML}<Types xmlns="{_PACKAGE}/content-types">'
            f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            f'<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_TYPE}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_TYPE}.styles+xml"/>{overrides}</Types>'))
        book.writestr(_entry("_rels/.rels"), (
            f'{_XML}<Relationships xmlns="{_PACKAGE}/relationships"><Relationship Id="rId1" '
            f'Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'))
        links = "".join(f'<Relationship Id="rId{k}" Type="{_RELS}/worksheet" Target="worksheets/sheet{k}.xml"/>'
                        for k in range(1, len(sheets) + 1))
        book.writestr(_entry("xl/_rels/workbook.xml.rels"), (
            f'{_XML}<Relationships xmlns="{_PACKAGE}/relationships">{links}'
            f'<Relationship Id="rId{len(sheets) + 1}" Type="{_RELS}/styles" Target="styles.xml"/></Relationships>'))
        entries = "".join(f'<sheet name="{name}" sheetId="{k}" r:id="rId{k}"/>' for k, name in enumerate(names, 1))
        book.writestr(_entry("xl/workbook.xml"), (
            f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><bookViews><workbookView/></bookViews>'
            f'<sheets>{entries}</sheets></workbook>'))
        book.writestr(_entry("xl/styles.xml"), _STYLES)
        for k, (a, b) in enumerate(sheets):
            first_row = above + 1 if k == 0 else 1
            last_row = first_row + b - a - 1
            selected = ' tabSelected="1"' if k == 0 else ""
            with book.open(_entry(f"xl/worksheets/sheet{k + 1}.xml"), "w", force_zip64=True) as sheet:
                sheet.write((f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_RELS}">'
                             f'<dimension ref="B{2 if k == 0 else 1}:{letters[-1]}{last_row}"/>'
                             f'<sheetViews><sheetView{selected} workbookViewId="0"/></sheetViews>'
                             f'<sheetFormatPr defaultRowHeight="15"/><sheetData>'
                             f'{lead if k == 0 else ""}').encode())
                for c in range(a, b, _CHUNK):
                    sheet.write(_rows_xml(cols, letters, c, min(b, c + _CHUNK), first_row + c - a))
                sheet.write(b'</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" '
                            b'header="0.3" footer="0.3"/></worksheet>')


def _cells(letter: str, row: pa.Array, values: pa.Array, style: int, *, number: bool) -> pa.Array:
    """One column's ``<c>`` elements: numbers as values, text as inline strings; null where empty."""
    if number:
        styled = f' s="{style}"' if style else ""
        return pc.binary_join_element_wise(f'<c r="{letter}', row, f'"{styled}><v>', values, "</v></c>", "")
    return pc.binary_join_element_wise(f'<c r="{letter}', row, '" t="inlineStr"><is><t xml:space="preserve">',
                                       _escape(values), "</t></is></c>", "")


def _rows_xml(cols: list[Column], letters: list[str], a: int, b: int, first_row: int) -> memoryview:
    """``<row>`` elements of rows ``a:b``, built column-wise by Arrow's string kernels."""
    row = pa.array(np.arange(first_row, first_row + b - a)).cast(pa.string())
    parts: list = ['<row r="', row, '">']
    for letter, col in zip(letters, cols):
        values = col.values.slice(a, b - a)
        if isinstance(col.number, pa.Array):
            cell = pc.if_else(pc.fill_null(col.number.slice(a, b - a), False),
                              _cells(letter, row, values, col.style, number=True),
                              _cells(letter, row, values, col.style, number=False))
        else:
            cell = _cells(letter, row, values, col.style, number=col.number)
        parts.append(pc.fill_null(cell, ""))
    parts.append("</row>")
    return csvfile.chunk_bytes(pc.binary_join_element_wise(*parts, ""))
