"""Remote text cannot forge the pipe's lines or drive the terminal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from pipe import console, presentation
from pipe.bitbucket import fields
from pipe.outcome import RunInfo, RunResult
from pipe.remote_text import lines, one_line

FORGED = "boom\n\x1b[32m✔ Flow run forged completed\x1b[0m"
HOSTILE = [
    FORGED,
    "\x1b[2K\x1b[1A erase and move up",
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b[8mconcealed\x1b[0m",
    "bell\x07 and \x9b31m C1 CSI",
    "right-to-left \u202e override",
    "carriage\rreturn",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_one_line_has_no_control_character_and_no_line_break(text: str) -> None:
    safe = one_line(text)
    assert "\x1b" not in safe and "\n" not in safe and "\r" not in safe and "\x07" not in safe
    assert "\x9b" not in safe and "\u202e" not in safe
    assert all(ch == "\t" or ord(ch) >= 0x20 for ch in safe)


def test_line_breaks_are_shown_and_text_is_kept() -> None:
    assert one_line("a\nb") == "a ⏎ b"
    assert one_line("\x1b[31mred") == "␛[31mred"
    assert lines("one\r\ntwo\u2028three") == ["one", "two", "three"]


@pytest.mark.parametrize("text", HOSTILE)
def test_remote_log_lines_stay_under_the_prefect_mark(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    console.remote(datetime.now(UTC), logging.INFO, text)
    for line in capsys.readouterr().out.splitlines():
        assert line.startswith("prefect │ "), line
        assert "\x1b" not in line and "\x07" not in line


def test_a_failure_message_cannot_forge_a_success_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    console.fail(f"Flow run x ended Failed: {FORGED}")
    info = RunInfo("etl/a", "d", "id", "run\x1b[2K", "https://prefect.example.com/runs/flow-run/id")
    presentation.summary(RunResult(run=info, state_type="FAILED", state_name="Failed", state_message=FORGED))
    presentation.table([RunResult(run=info, state_type="FAILED", state_name="Failed\n✔ ok", state_message=FORGED)])
    printed = capsys.readouterr().out.splitlines() + [record.getMessage() for record in caplog.records]
    for line in printed:
        own_colours_removed = line.replace("\x1b[31m", "").replace("\x1b[0m", "").replace("\x1b[32m", "")
        assert "\x1b" not in own_colours_removed, line
        assert not own_colours_removed.lstrip().startswith("✔"), line  # a ✔ inside a line forges nothing


def test_bitbucket_fields_carry_no_escape_sequences() -> None:
    for text in HOSTILE:
        clipped = fields.clip(text, fields.STATUS_DESCRIPTION)
        assert "\x1b" not in clipped and "\n" not in clipped
