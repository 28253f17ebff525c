"""The plant's language: every marked message translated, numbers and dates as Brazilians write them,
the language of a context, the setting, and ``kafer`` speaking Portuguese end to end."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from kafer import i18n
from kafer.config import load_settings
from kafer.errors import ConfigError, StepError, UploadError
from kafer.i18n import (Marked, catalog_problems, current, date, datetime, marked_messages, megabytes, ntr, number,
                        percent, tr, using)

ROOT = Path(__file__).resolve().parent.parent
NOTE = ("Note: {count} car was road-tested outside the period the falhas cover (or not yet): its label is unknown "
        "and it is not used to train or evaluate.",
        "Note: {count} cars were road-tested outside the period the falhas cover (or not yet): their label is "
        "unknown and they are not used to train or evaluate.")


def test_every_marked_message_has_a_portuguese_translation_with_the_same_placeholders():
    marked = marked_messages()
    assert {m.file for m in marked} >= {"kafer/cli.py", "kafer/errors.py", "kafer/jobs.py", "kafer/uploads.py"}
    assert catalog_problems("pt-BR", marked) == []


def test_the_catalog_check_finds_a_missing_a_stale_and_a_wrong_translation(tmp_path, monkeypatch):
    folder = tmp_path / "pt_BR" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "kafer.po").write_text(
        'msgid ""\nmsgstr ""\n"Language: pt_BR\\n"\n"Plural-Forms: nplurals=2; plural=(n > 1);\\n"\n\n'
        'msgid "row {row}"\nmsgstr "linha {linha}"\n\n'
        'msgid "gone"\nmsgstr "sumiu"\n\n'
        '#, fuzzy\nmsgid "sheets"\nmsgstr "planilhas"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    problems = catalog_problems("pt-BR", [Marked("row {row}", "kafer/errors.py", 3),
                                          Marked("sheets", "kafer/cli.py", 9),
                                          Marked("", "kafer/x.py", 5, "tr() needs a literal message id")])
    assert any("'linha {linha}'" in p and "placeholders" in p for p in problems)
    assert any("no pt-BR translation of 'sheets'" in p for p in problems)  # a fuzzy one reads in English
    assert any("'gone' is marked nowhere" in p for p in problems)
    assert any(p.startswith("kafer/x.py:5: tr() needs a literal") for p in problems)


def test_the_extraction_reads_literal_ids_and_refuses_text_built_at_run_time(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text(
        "from kafer.i18n import mark, ntr, tr\n"
        "HEADERS = {'file': mark('file')}\n"
        "def f(n, name):\n"
        "    tr('read {n} rows', n=n)\n"
        "    ntr('one car', '{count} cars', n)\n"
        "    tr(HEADERS[name])\n"
        "    tr(f'read {n} rows')\n"
        "    tr('read ' + name)\n"
        "    mark(name)\n", encoding="utf-8")
    found = marked_messages(package)
    assert [m.id for m in found if not m.problem] == ["file", "read {n} rows", ("one car", "{count} cars")]
    assert [m.line for m in found if m.problem] == [7, 8, 9]


@pytest.mark.parametrize("language, expected", [
    ("en", ["1,234.5", "12.5%", "2026-12-06", "2026-12-06 14:05", "0.0", "124.3 MB", "1,234,567"]),
    ("pt-BR", ["1.234,5", "12,5\u00a0%", "06/12/2026", "06/12/2026 14:05", "0,0", "124,3 MB", "1.234.567"]),
])
def test_numbers_shares_and_dates_are_written_as_the_language_writes_them(language, expected):
    with using(language):
        assert [number(1234.46, 1), percent(0.125), date(dt.date(2026, 12, 6)),
                datetime("2026-12-06T14:05:31+00:00"), number(-0.04, 1), megabytes(124_300_000),
                number(1234567)] == expected
        assert datetime(dt.datetime(2026, 12, 6, 14, 5)) == expected[3]


def test_messages_plurals_and_errors_read_in_the_current_language():
    error = UploadError("bad KNR", file="a.xlsx", sheet="Relatório 1", row=3, column="KNR", value="x")
    assert str(error) == "a.xlsx, sheet 'Relatório 1', row 3, column KNR (value 'x'): bad KNR"
    with using("pt-BR"):
        error = UploadError("bad KNR", file="a.xlsx", sheet="Relatório 1", row=3, column="KNR", value="x")
        assert str(error) == "a.xlsx, planilha 'Relatório 1', linha 3, coluna KNR (valor 'x'): bad KNR"
        assert str(StepError("03_retrain", "boom")) == "a etapa '03_retrain' falhou: boom"
        assert tr("kafer {command}: interrupted", command="ingest") == "kafer ingest: interrompido"
        assert ntr(*NOTE, 1).startswith("Observação: 1 carro passou")
        assert ntr(*NOTE, 2345).startswith("Observação: 2.345 carros passaram")
        assert tr("a message nobody translated") == "a message nobody translated"
    assert ntr(*NOTE, 2345).startswith("Note: 2,345 cars were")


def test_the_language_is_the_context_s_then_the_environment_s_then_english(monkeypatch):
    monkeypatch.delenv("KAFER_LANG", raising=False)
    assert current() == "en"
    with using("pt_BR"):
        assert current() == "pt-BR"
        with using("en-US"):
            assert current() == "en"
        assert current() == "pt-BR"
        with using(None):
            assert current() == "pt-BR"
    monkeypatch.setenv("KAFER_LANG", "pt-br")
    assert current() == "pt-BR"
    monkeypatch.setenv("KAFER_LANG", "klingon")
    assert current() == "en"  # a message never fails for its language
    with pytest.raises(ConfigError, match="language must be one of en, pt-BR, not 'fr'"):
        with using("fr"):
            pass


def test_using_with_environ_reaches_new_threads_and_child_processes_then_is_undone(monkeypatch):
    monkeypatch.delenv("KAFER_LANG", raising=False)
    heard = []
    with using("pt-BR", environ=True):
        thread = threading.Thread(target=lambda: heard.append(current()))
        thread.start()
        thread.join()
        child = subprocess.run([sys.executable, "-c", "from kafer.i18n import current; print(current())"],
                               capture_output=True, text=True, check=True)
    assert heard == ["pt-BR"] and child.stdout.strip() == "pt-BR"
    assert "KAFER_LANG" not in os.environ and current() == "en"


def test_the_setting_comes_from_kafer_toml_and_kafer_lang_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("KAFER_LANG", raising=False)
    (tmp_path / "kafer.toml").write_text('language = "pt_BR"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings().language == "pt-BR"
    monkeypatch.setenv("KAFER_LANG", "en")
    assert load_settings().language == "en"
    monkeypatch.setenv("KAFER_LANG", "de")
    with pytest.raises(ConfigError, match="not 'de'"):
        load_settings()


def test_kafer_speaks_portuguese_with_brazilian_numbers_when_the_plant_says_so(tmp_path, months):
    project = tmp_path / "plant"
    project.mkdir()
    (project / "kafer.toml").write_text('language = "pt-BR"\nlake = "lake"\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("KAFER_LANG", None)

    def kafer(*args):
        return subprocess.run([sys.executable, "-m", "kafer.cli", *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=600)

    done = kafer("ingest", str(months[0]))
    assert done.returncode == 0, done.stderr
    assert "Recebido:" in done.stdout and "arquivo" in done.stdout and "linhas no lago" in done.stdout
    table = re.search(r"Tabela curada v\S+: ([\d.]+) carros, ([\d.]+) com rótulo conhecido, ([\d.]+) falhas na "
                      r"rodagem \((\d+,\d)\u00a0%\)", done.stdout)
    assert table and table.group(1) == "400", done.stdout
    rows = re.findall(r"(\d{2}/\d{2}/\d{4} \d{2}:\d{2}) a \d{2}/\d{2}/\d{4} \d{2}:\d{2}  "
                      r"\((\d{1,3}(?:\.\d{3})+) linhas no lago\)", done.stdout)
    assert len(rows) == 3, done.stdout  # resultados, falhas and status, thousands grouped with points

    bad = project / "FALHAS_bad.csv"
    bad.write_text("KNR,MODELO,COR,MOTOR,ESTACAO,USUARIO,HALLE,FALHA,DATA\n"
                   "2024-0100001,T-Cross,Azul,1.0,ST1,u1,ZP7,Ruído,2024-04-02 10:00:00\n"
                   "24-1,T-Cross,Azul,1.0,ST1,u1,ZP7,Ruído,2024-04-02 10:00:00\n", encoding="utf-8")
    refused = kafer("ingest", str(bad))
    assert refused.returncode == 2
    said = refused.stderr.splitlines()[-1]
    assert said.startswith("kafer ingest: erro: FALHAS_bad.csv, linha 3, coluna KNR (valor '24-1'): "), refused.stderr


def test_kafer_status_and_lists_in_portuguese(lake, tmp_path, capsys, monkeypatch):
    from kafer.cli import main
    from test_registry import RUN1, retrain

    monkeypatch.setenv("KAFER_LANG", "pt-BR")
    assert main(["status", "--lake", lake.url]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (f"O lago {lake.url} ainda não tem nenhum modelo: retreine "
                                                       "primeiro (make retrain, ou kafer retrain CAMINHO).")
    version = retrain(lake, tmp_path / "runs", RUN1)
    assert main(["status", "--lake", lake.url, "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [f"Lago: {lake.url}", "Produção: nenhum",
                       f"Modelos novos aguardando decisão: {version} (execução {RUN1})"]
    assert out[3:] == ["Execuções: nenhuma", "Decisões: nenhuma"]
    assert main(["lists", "--lake", lake.url]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"Lago: {lake.url} (rótulos da versão curada ")
    assert "Nenhuma lista de inspeção emitida ainda" in said
    assert "Veredito da lista sombra: SEM LISTA SOMBRA. Nenhuma lista sombra ainda: defina shadow = true" in said
    monkeypatch.delenv("KAFER_LANG")
    assert main(["lists", "--lake", lake.url]) == 0
    said = capsys.readouterr().out
    assert "No inspection list issued yet" in said
    assert "Shadow verdict: NO SHADOW. No shadow list yet: set shadow = true" in said


def test_the_monitor_s_news_and_notes_in_portuguese_with_brazilian_numbers_and_english_unchanged():
    from kafer.drift import InputDrift
    from kafer.monitor import RateNews, period_words

    news = RateNews(1200, 84, 6000, 210, 0.0004, "less")
    inputs = pd.DataFrame({"family": ["contract"], "what": ["NOK screw tightenings"], "then": [1.0], "now": [2.0],
                           "psi": [0.3], "p_value": [0.001], "p_adjusted": [0.001], "moved": [True]},
                          index=["n_nok_id2"])
    families = pd.DataFrame({"inputs": [1], "moved": [1], "most": ["NOK screw tightenings"]},
                            index=pd.Index(["contract"], name="family"))
    new = pd.DataFrame({"kind": ["config"], "key": ["MOTOR=XYZ"], "what": ["engine XYZ"], "cars": [1234]})
    drift = InputDrift(inputs, families, new, 12000, 3456, 0.05)
    assert news.words().startswith(
        "The plant fails less often: 3.5% of the 6,000 cars road-tested since it was kept failed their road test, "
        "against 7.0% of the 1,200 cars the model learned from (7.0% → 3.5%; two-sided p < 0.001). That is news of "
        "the plant, not of the model")
    assert drift.summary == (
        "Between the 12,000 cars the model learned from and the 3,456 cars scored since, 1 inputs were compared; 1 "
        "moved clearly (adjusted for the number of inputs compared, at 5%, with a PSI of at least 0.1): the "
        "contract's counts and dwell times: NOK screw tightenings. Never seen among the cars it learned from: engine "
        "XYZ (1,234 cars).")
    assert [period_words("2024-05"), period_words("since kept")] == ["2024-05", "since kept"]
    with using("pt-BR"):
        said, moved, months = news.words(), drift.summary, [period_words("2024-05"), period_words("since kept")]
    assert said.startswith(
        "A fábrica falha menos: 3,5\u00a0% dos 6.000 carros testados na rodagem desde que ele foi mantido falharam no "
        "teste de rodagem, contra 7,0\u00a0% dos 1.200 carros com que o modelo aprendeu (7,0\u00a0% → 3,5\u00a0%; p "
        "bilateral < 0,001). Isso é notícia da fábrica, não do modelo")
    assert moved.startswith("Entre os 12.000 carros com que o modelo aprendeu e os 3.456 carros pontuados depois")
    assert "; 1 mudou claramente (" in moved and "a 5\u00a0%, com um PSI de pelo menos 0,1)" in moved
    assert moved.endswith("Nunca vistos entre os carros com que o modelo aprendeu: engine XYZ (1.234 carros).")
    assert months == ["05/2024", "desde então"]


def test_the_shadow_verdict_in_portuguese_with_brazilian_numbers_and_dates_and_english_unchanged():
    from test_lists import SETTINGS, shadow_world

    from kafer.lists import shadow_verdict

    records, frames, labels = shadow_world(28, lift=4.0)
    english = shadow_verdict(records, frames, labels, settings=SETTINGS, today=dt.date(2024, 7, 1))
    waiting = labels.assign(label_known=labels.index < 100)
    with using("pt-BR"):
        verdict = shadow_verdict(records, frames, labels, settings=SETTINGS, today=dt.date(2024, 7, 1))
        page, label = verdict.html, verdict.label
        not_yet = shadow_verdict(records[:10], frames, waiting, settings=SETTINGS, today=dt.date(2024, 7, 1))
    low, high = (f"{x:.2f}" for x in verdict.lift[1:])
    assert verdict.decision == english.decision == "go" and verdict.lift == english.lift  # the record keeps the keys
    assert english.label == "GO" and "Shadow verdict: <span" in english.html and ">GO</span>" in english.html
    assert "<td>2024-05-06 to 2024-06-03 (4 weeks chosen)</td>" in english.html
    assert english.words.startswith("Go: over the 4 weeks from 2024-05-06 to 2024-06-02, the flagged cars of 28 "
                                    "lists held")
    assert verdict.words.startswith("Liberado: nas 4 semanas de 06/05/2024 a 02/06/2024, os carros marcados de 28 "
                                    "listas tiveram")
    assert f"[{low.replace('.', ',')}, {high.replace('.', ',')}] vezes" in verdict.words
    assert "entre 8.400 carros com resultado" in verdict.words and "barra de 2 definida" in verdict.words
    assert label == "LIBERADO" and "Veredito da lista sombra: <span" in page and ">LIBERADO</span>" in page
    assert "<td>06/05/2024 a 03/06/2024 (4 semanas escolhidas)</td>" in page and "Ganho sobre o acaso" in page
    assert not_yet.words.startswith("Ainda não: 100 dos 3.000 carros das listas sombra têm o resultado")
