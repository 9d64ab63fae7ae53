"""The console script's surface: every flag explained with its default, global flags anywhere."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path
from typing import TextIO

import pytest

from vitaltrail import cli
from vitaltrail.commands import key_text


def _parsers(
    parser: argparse.ArgumentParser, path: str = "vitaltrail"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, f"{path} {name}")
    return found


PARSERS = _parsers(cli.parser())


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[name for name, _ in PARSERS])
def test_every_flag_has_help_that_shows_its_default(
    name: str, parser: argparse.ArgumentParser
) -> None:
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(
            action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction
        ):
            continue
        assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
        if not action.option_strings or action.required:
            continue
        if isinstance(action, argparse._StoreTrueAction) and "default" not in action.help:
            continue  # an on/off flag is off unless given
        shown = (
            formatter._expand_help(action) if hasattr(formatter, "_expand_help") else action.help
        )
        assert "default" in shown, (
            f"{name} {action.option_strings}: the help does not say the default"
        )


def test_every_subcommand_takes_the_global_flags_after_its_name(tmp_path: Path) -> None:
    for name, parser in PARSERS[1:]:
        flags = {s for a in parser._actions for s in a.option_strings}
        assert {"--data-dir", "--log-level"} <= flags, name
    before = cli.parser().parse_args(["--data-dir", str(tmp_path), "audit"])
    after = cli.parser().parse_args(["audit", "--data-dir", str(tmp_path), "--log-level", "debug"])
    neither = cli.parser().parse_args(["audit"])
    assert before.data_dir == after.data_dir == tmp_path
    assert after.log_level == "DEBUG"
    assert neither.data_dir is None
    assert neither.log_level == "INFO"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("vitaltrail 0.")


def test_verify_names_a_missing_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ledger.pub"
    bundle = tmp_path / "bundle.json"
    bundle.write_text("{}")
    assert cli.main(["verify", str(bundle), "--ledger-key", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no such file: {missing}" in err


def test_a_key_is_taken_inline_or_from_its_file(tmp_path: Path) -> None:
    inline = "vitaltrail.local/ledger+0a1b2c3d+AQID"
    assert key_text(inline) == inline
    path = tmp_path / "ledger.pub"
    path.write_text(inline + "\n")
    assert key_text(str(path)) == inline + "\n"
    with pytest.raises(FileNotFoundError):
        key_text(str(tmp_path / "other.pub"))


def test_log_lines_print_above_the_progress_line_not_through_it() -> None:
    """While a progress line is live, log records go through rich, which prints them above it."""
    from rich.console import Console
    from rich.file_proxy import FileProxy

    from vitaltrail.progress import live_progress

    root = logging.getLogger()
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(sys.stderr)  # as basicConfig
    root.addHandler(handler)
    try:
        before = handler.stream
        terminal = Console(file=io.StringIO(), force_terminal=True)
        with live_progress("testing", 10, terminal) as shown:
            shown.update(5, "half way")
            assert isinstance(handler.stream, FileProxy)
            logging.getLogger("vitaltrail.test").warning("a log line")
        assert handler.stream is before
        drawn = terminal.file.getvalue()  # type: ignore[attr-defined]
        assert "a log line" in drawn
        assert "half way" in drawn
    finally:
        root.removeHandler(handler)
