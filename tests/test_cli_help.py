"""The help a new user reads first: every command's summary is one sentence on one line (typer
keeps a docstring's line breaks in command listings), a long paragraph reads as one, a spec
table named in an option's help, such as ``[sidecar]``, is printed, not swallowed as Rich
markup, `autotune strategies` says what each strategy does, and a mistyped command line gets
one line, not a block."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from autotune.cli import app

runner = CliRunner()


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command under ``group``, by its full name (typer bundles its own click, so the
    groups are told apart by having subcommands)."""
    for name, command in group.commands.items():
        yield " ".join((*path, name)), command
        if getattr(command, "commands", None):
            yield from commands(command, (*path, name))


def test_every_command_summary_is_one_line() -> None:
    found = dict(commands(typer.main.get_command(app)))
    assert {"tune", "sidecar", "gate check", "drafters quantize", "build-ik"} <= set(found)
    for name, command in found.items():
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, f"`autotune {name}`: {summary!r}"


def test_spec_table_names_survive_in_option_help() -> None:
    result = runner.invoke(app, ["sidecar", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stdout
    assert "(default: [sidecar] server_url)" in result.stdout
    assert "(default: [sidecar] interval_s)" in result.stdout


def test_a_long_paragraph_is_reflowed_not_broken_where_the_docstring_wraps() -> None:
    result = runner.invoke(app, ["sidecar", "--help"], env={"COLUMNS": "200"})
    assert "retunes on drift, a schedule, or POST /retune." in result.stdout


def test_strategies_lists_each_with_a_line_and_marks_the_default() -> None:
    from strategies import SUMMARIES, strategy_names

    assert set(SUMMARIES) == set(strategy_names())  # a new strategy needs its line
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == strategy_names()
    assert [line for line in lines if line.endswith("(the default)")] == [
        line for line in lines if line.startswith("spec-model ")]


def test_usage_errors_print_one_line_naming_the_fix() -> None:
    cases = {("tune", "--trials", "0"): "'--trials'", ("tune", "--bogus"): "--bogus",
             ("nosuch",): "'nosuch'", ("gate", "check"): "baseline_path"}
    for argv, named in cases.items():
        result = subprocess.run([sys.executable, "-m", "autotune", *argv],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr.startswith("autotune: error: "), (argv, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and named in result.stderr, result.stderr
        assert "--help'" in result.stderr and "Traceback" not in result.stderr


def test_a_bare_group_still_shows_its_help() -> None:
    result = subprocess.run([sys.executable, "-m", "autotune", "gate"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2  # rich prints the help itself, to stdout
    shown = result.stdout + result.stderr
    assert "check" in shown and "record" in shown and "error" not in shown
