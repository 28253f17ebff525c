"""Scoring every shift: `kafer predict --watch` scores each new export once, writes its list where inspectors
read it and records it; an unchanged file is never scored twice, across restarts."""

from __future__ import annotations

import shutil

import pytest

from kafer import catalog
from kafer.cli import main
from kafer.errors import OutputError
from kafer.lake import Lake
from kafer.watch import watch
from test_predict import world  # noqa: F401  (a module fixture: a production model and an upload to score)


@pytest.fixture
def folders(world, tmp_path):
    """A lake with production (a copy of the world's), an inbox holding the upload, and the lists' folder."""
    shutil.copytree(world["settings"].lake, tmp_path / "lake")
    inbox, out = tmp_path / "inbox", tmp_path / "lists"
    shutil.copytree(world["upload"].folder, inbox)
    out.mkdir()
    return world["settings"].replace(lake=str(tmp_path / "lake")), inbox, out


def look(settings, inbox, out, **options) -> list[str]:
    said = []
    watch(str(inbox), str(out), settings=settings, by="watcher", once=True, say=said.append,
          **{"settle": 0.0, **options})
    return said


def looks(count: int, settings, inbox, out, *, every: float) -> list[str]:
    """What a running watch says over ``count`` looks (it is stopped, as by Ctrl-C, while it waits after the last)."""
    seen, waits = [], []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == count:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watch(str(inbox), str(out), settings=settings, by="watcher", settle=0.0, every=every, say=seen.append,
              sleep=sleep)
    assert waits == [every] * count
    return seen


def test_a_new_export_is_scored_once_and_its_list_written_and_recorded(folders):
    settings, inbox, out = folders
    [said] = look(settings, inbox, out)
    [record] = catalog.list_records(Lake(settings.lake))
    assert f"List {record['id']} recorded in the lake" in said and "Written to " in said
    [written] = list(out.iterdir())
    assert written.name.startswith("inspection-2024-") and written.suffix == ".xlsx"
    assert (record["source"], record["by"]) == ("watch", "watcher")
    assert sorted(f["name"] for f in record["files"]) == sorted(p.name for p in inbox.iterdir())
    assert look(settings, inbox, out) == [f"Nothing new in {inbox}."], "a restart scores nothing again"
    assert len(catalog.list_records(Lake(settings.lake))) == 1 and len(list(out.iterdir())) == 1


def test_a_file_is_known_by_its_content_not_its_name(folders):
    settings, inbox, out = folders
    look(settings, inbox, out)
    status = next(inbox.glob("STATUS_*"))
    shutil.copy(status, inbox / "STATUS_again.xlsx")
    assert look(settings, inbox, out) == [f"Nothing new in {inbox}."]
    falhas = next(inbox.glob("FALHAS_*.csv"))
    falhas.write_bytes(b"".join(falhas.read_bytes().splitlines(keepends=True)[:200]))  # changed: scored again
    [said] = look(settings, inbox, out, fmt="csv")
    [_, record] = catalog.list_records(Lake(settings.lake))
    assert [f["name"] for f in record["files"]] == [falhas.name] and "(CSV)" in said


def test_an_export_still_being_copied_waits(folders):
    settings, inbox, out = folders
    assert look(settings, inbox, out, settle=3600.0) == [f"Nothing new in {inbox}."]
    assert not catalog.list_records(Lake(settings.lake))


def test_a_broken_file_is_reported_once_and_left_alone_and_the_others_are_scored(folders):
    settings, inbox, out = folders
    (inbox / "STATUS_broken.csv").write_text("KNR,STATUS,DATA\n")
    seen = looks(3, settings, inbox, out, every=5)
    assert seen[0].startswith(f"Watching {inbox} every 5 s")
    assert seen[1].startswith("Refused, left alone until it changes: STATUS_broken.csv: ")
    assert "recorded in the lake" in seen[2] and len(seen) == 3, "the third look says nothing"
    [record] = catalog.list_records(Lake(settings.lake))
    assert "STATUS_broken.csv" not in [f["name"] for f in record["files"]] and len(record["files"]) == 5


def test_a_watch_without_a_production_model_keeps_looking(folders, tmp_path):
    settings, inbox, out = folders
    seen = looks(2, settings.replace(lake=str(tmp_path / "empty-lake")), inbox, out, every=1)
    assert [line.startswith("Cannot score now (the lake ") for line in seen[1:]] == [True, True]
    assert "has no production model yet" in seen[1] and not list(out.iterdir())


def test_the_command_line_watches_once_and_refuses_what_is_not_a_folder(folders, capsys, tmp_path):
    settings, inbox, out = folders
    where = ["--lake", settings.lake]
    assert main(["predict", "--watch", str(inbox), "--out", str(out), "--once", "--settle", "0", *where]) == 0
    assert "recorded in the lake" in capsys.readouterr().out
    assert main(["predict", "--watch", str(inbox), "--out", str(tmp_path / "nowhere"), "--once", *where]) == 1
    assert "the lists' folder" in capsys.readouterr().err
    assert main(["predict", str(inbox), "--watch", str(inbox), "--out", str(out), *where]) == 1
    assert "name no other upload" in capsys.readouterr().err
    with pytest.raises(OutputError, match="a watch writes lists as xlsx or csv"):
        watch(str(inbox), str(out), settings=settings, by="w", fmt="pdf", once=True)
