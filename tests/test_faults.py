"""Faults in words and races with one clear outcome, as a user meets them on the command line, and the
whole story on S3 (a moto server on 127.0.0.1, see tests/s3.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from kafer import registry
from kafer.cli import main
from kafer.config import load_settings
from kafer.decide import decide
from kafer.errors import LockTimeout
from kafer.lake import Lake
from kafer.pipeline import retrain
from worlds import SMALL, quick_retrain

KAFER = [sys.executable, "-m", "kafer.cli"]


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


def test_a_missing_bucket_is_said_before_the_upload_is_read_and_never_created(s3_endpoint, tmp_path, capsys):
    import s3

    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / "broken.xlsx").write_bytes(b"not a workbook")  # would be refused, were it read
    assert main(["ingest", str(upload), "--lake", "s3://kafer-no-such-bucket/lake"]) != 0
    line = one_line(capsys.readouterr().err)
    assert "kafer-no-such-bucket" in line and "does not exist" in line and "broken.xlsx" not in line
    assert "kafer-no-such-bucket" not in s3.buckets()


def test_an_upload_on_a_store_that_fails_is_said_in_one_line(s3_endpoint, tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["ingest", "s3://kafer-no-such-bucket/upload/", "--lake", lake]) != 0
    line = one_line(capsys.readouterr().err)
    assert "s3://kafer-no-such-bucket/upload/" in line
    assert main(["predict", "s3://kafer-no-such-bucket/upload/", "--lake", lake, "--out", str(tmp_path / "r.csv")]) != 0
    one_line(capsys.readouterr().err)


def test_a_lake_at_a_file_is_said_for_every_command(tmp_path, capsys):
    afile = tmp_path / "notes.md"
    afile.write_text("not a lake")
    for argv in (["status"], ["features", "--out", str(tmp_path / "f.csv")], ["retrain"],
                 ["decide", "r1", "keep-new", "--by", "Ana", "--why", "x"]):
        assert main(argv + ["--lake", str(afile)]) != 0
        assert "is a file" in one_line(capsys.readouterr().err)


def test_a_run_id_naming_a_file_is_said(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "README.md").write_text("runs of this lake")
    assert main(["decide", "README.md", "keep-new", "--by", "Ana", "--why", "x", "--lake", str(tmp_path / "lake"),
                 "--runs", str(runs)]) != 0
    assert "is a file in" in one_line(capsys.readouterr().err)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lake's retrain lock for run r-other until the test ends."""
    script = textwrap.dedent(f"""
        import sys
        from kafer.lake import Lake
        from kafer.locks import hold
        with hold(Lake({str(tmp_path / 'lake')!r}), "retrain", purpose="retrain r-other", details={{"run": "r-other"}}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    yield child
    child.stdin.close()
    child.wait(timeout=60)


def test_a_retrain_refused_because_the_lake_is_busy_says_so_before_any_step(tmp_path, holder, months, capsys,
                                                                           monkeypatch):
    settings = load_settings(lake=str(tmp_path / "lake"), runs=str(tmp_path / "runs"), lock_timeout=0.5)
    with pytest.raises(LockTimeout, match=r"busy: retrain r-other \(pid \d+ on .*, alive"):
        retrain([str(months[0])], settings=settings, run_id="mine")
    assert not (tmp_path / "runs" / "mine").exists()
    (tmp_path / "kafer.toml").write_text("[kafer]\nlock_timeout = 0.5\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["retrain", str(months[0]), "--lake", settings.lake, "--runs", settings.runs]) != 0
    line = one_line(capsys.readouterr().err)
    assert "retrain r-other" in line and "alive" in line and "step" not in line


def test_two_ingests_of_one_upload_at_once_end_in_one_landing(tmp_path, months):
    lake = str(tmp_path / "lake")
    children = [subprocess.Popen(KAFER + ["ingest", str(months[1]), "--lake", lake], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _, err in outcomes]
    assert sum("Already in the lake" in out for out, _ in outcomes) >= 1
    landed = Lake(lake).list("raw/index")
    assert len(landed) == len(list(months[1].iterdir()))


def test_the_whole_story_on_s3(s3_lake, tmp_path, months):
    settings = load_settings(lake=s3_lake.url, runs=str(tmp_path / "runs"), **SMALL)
    first = retrain([str(months[0])], settings=settings, run_id="s1")  # papermill kernels reach S3 too
    decide("s1", "keep-new", by="Ana", why="first", lake=s3_lake.url, runs=settings.runs)
    second = quick_retrain(months[1], settings=settings, run_id="s2")
    decide("s2", "keep-old", by="Rui", why="no better", lake=s3_lake.url, runs=settings.runs)
    assert registry.production(s3_lake)["version"] == first.candidate_version != second
    out = tmp_path / "ranked.csv"
    assert main(["predict", str(months[2]), "--lake", s3_lake.url, "--out", str(out)]) == 0
    assert set(pd.read_csv(out)["model_version"]) == {first.candidate_version}
    assert [r["status"] for r in registry.status(s3_lake, runs=settings.runs)["runs"]] == ["succeeded", "succeeded"]
