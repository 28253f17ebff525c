"""The terminal: every option and argument of every command explained."""

from __future__ import annotations

import argparse

import pytest

from kafer.cli import build_parser, main


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
