"""The desk's pages around the decision, without a server: the language a request is answered in,
the bar each role sees, and a list's workbook made again from its record in the lake."""

from __future__ import annotations

import io

import openpyxl
import pandas as pd
import pytest

from kafer import catalog
from kafer.config import load_settings
from kafer.desk.pages import chosen_language, nav
from kafer.desk.rights import Person
from kafer.errors import OutputError
from kafer.i18n import using
from kafer.predict import recorded_workbook

VIEWER, ANALYST = Person("vic", ("viewer",), "account"), Person("rui", ("analyst",), "account")


def test_the_persons_cookie_wins_over_the_plants_setting_and_nonsense_falls_back_to_it():
    plant = load_settings().replace(language="pt-BR")
    assert chosen_language("en", plant) == "en"
    assert chosen_language("pt_BR", load_settings()) == "pt-BR"
    assert chosen_language("klingon", plant) == "pt-BR" and chosen_language(None, plant) == "pt-BR"
    assert chosen_language("", load_settings()) == "en"


def test_the_bar_offers_each_role_its_pages_in_the_persons_language():
    bar = nav(VIEWER, base="/", here="lists", xsrf_form_html="", next_url="/lists")
    assert 'href="/lists"' in bar and 'aria-current="page"' in bar and 'href="/retrain"' in bar
    assert 'href="/exports"' not in bar and "Signed in: vic (viewer)" in bar
    assert 'href="/exports"' in nav(ANALYST, base="/", here="", xsrf_form_html="", next_url="/")
    with using("pt-BR"):
        bar = nav(VIEWER, base="/desk/", here="", xsrf_form_html="<input name=_xsrf>", next_url="/desk/")
    assert "Listas de inspeção" in bar and "Conectado: vic (leitor)" in bar and 'href="/desk/lists"' in bar
    assert 'value="pt-BR"' in bar and "aria-pressed" in bar and "<input name=_xsrf>" in bar


def test_a_lists_workbook_is_made_again_from_its_record_and_an_unknown_list_is_refused(memory_lake):
    record = {"id": "l20240520T101500.000000Z-ab12", "at": "2024-05-20T10:15:00+00:00", "by": "ines",
              "source": "command line", "model": "m1", "family": "hgb", "budget": 0.5, "threshold": 0.3,
              "files": [{"name": "STATUS_1.csv", "sha256": "0"}], "cars": 2, "at_road_test": 2, "flagged": 1,
              "audit": 0, "audit_share": 0.0, "audit_seed": 1, "acted_on": True, "shadow": None,
              "data_end": None, "shift": None}
    cars = pd.DataFrame({"KNR": ["2024-0000001", "2024-0000002"], "probability": [0.6, 0.1], "rank": [1, 2],
                         "in_budget": [True, False], "audit": [False, False], "at_road_test": [True, True],
                         "road_test_at": pd.to_datetime(["2024-05-20 08:00", "2024-05-20 09:00"]),
                         "last_checkpoint": [None, None], "last_checkpoint_at": pd.to_datetime([None, None])})
    catalog.save_list(memory_lake, record, cars)
    out = io.BytesIO()
    recorded_workbook(memory_lake, record["id"]).save(out)
    book = openpyxl.load_workbook(io.BytesIO(out.getvalue()), read_only=True)
    rows = list(book["Inspection list"].iter_rows(values_only=True))
    assert rows[0][:4] == ("Rank", "KNR", "Road-test risk", "In inspection budget")
    assert [row[1] for row in rows[1:]] == ["2024-0000001", "2024-0000002"]
    about = " ".join(str(v) for row in book["About this list"].iter_rows(values_only=True) for v in row if v)
    assert record["id"] in about and "ines" in about and "STATUS_1.csv" in about
    with pytest.raises(OutputError, match="holds no list l2099"):
        recorded_workbook(memory_lake, "l20990101T000000.000000Z-0000")
