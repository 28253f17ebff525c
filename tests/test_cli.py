"""The terminal: every option explained, `kafer status` naming its lake, and a closed pipe ending quietly."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from kafer.cli import build_parser, main
from test_registry import RUN1, retrain


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_and_argument_of_every_command_has_a_help_text():
    parser = build_parser()
    missing = []
    for name, command in {"kafer": parser, **subcommands(parser)}.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"kafer {a.dest}" for a in action._choices_actions if not (a.help or "").strip()]
            elif not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"no help text: {', '.join(missing)}"


def test_kafer_help_lists_each_command_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for name in subcommands(build_parser()):
        assert any(line.strip().startswith(name) for line in out.splitlines()), name
    assert "check an upload, land it in the lake" in out and "`kafer COMMAND --help`" in out


def test_dates_are_explained_and_checked(capsys):
    with pytest.raises(SystemExit):
        main(["demo-data", "--help"])
    assert "first production day, YYYY-MM-DD" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["demo-data", "out", "--start", "1/4/2024"])
    assert exit_.value.code == 2 and "'1/4/2024' is not a day written YYYY-MM-DD" in capsys.readouterr().err


def test_status_names_the_lake_and_says_plainly_when_it_holds_no_model(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    assert main(["status", "--lake", lake]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Lake: {lake}", f"The lake {lake} holds no model yet: retrain first (make retrain, or kafer retrain PATH)."]
    assert main(["status", "--json", "--lake", lake]) == 0
    assert json.loads(capsys.readouterr().out) == {"lake": lake, "production": None, "candidates": [],
                                                   "decisions": [], "runs": [], "track_record": None}


def test_status_with_a_pending_candidate(lake, tmp_path, capsys):
    version = retrain(lake, tmp_path / "runs", RUN1)
    assert main(["status", "--lake", lake.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [f"Lake: {lake.url}", "Production: none",
                         f"New models waiting for a decision: {version} (run {RUN1})"]
    assert main(["status", "--json", "--lake", lake.url]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["lake"] == lake.url and [c["version"] for c in state["candidates"]] == [version]


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`kafer status --json | head`: the pipe's read end is closed before kafer writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "kafer.cli", "status", "--json", "--lake", str(tmp_path / "lake")],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""
