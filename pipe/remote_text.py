"""Text from remote systems (flow logs, state names and messages, run and task names, error details) is
untrusted: a flow can put terminal escape sequences or line breaks into it. Before it reaches the build
log (or Bitbucket), every control character is shown as a visible symbol, so nothing remote can colour,
move the cursor, hide text, make links, or start a line of its own that looks like the pipe's.
"""

from __future__ import annotations

import re

# C0 controls but tab, DEL, C1 controls, and the Unicode format characters that reorder or hide text.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
LINE_BREAK = " ⏎ "


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␛ for ESC, ␇ for BEL, …: the control picture of the character
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"


def one_line(text: str) -> str:
    """``text`` as one line: line breaks become `` ⏎ ``, other control characters visible symbols."""
    return _CONTROL.sub(_visible, _LINE_BREAKS.sub(LINE_BREAK, text))


def lines(text: str) -> list[str]:
    """``text`` split at its line breaks (every kind), each line made safe as by :func:`one_line`."""
    return [_CONTROL.sub(_visible, line) for line in _LINE_BREAKS.split(text)]


def clipped(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut in the middle at spaces: a message's cause and its own advice are
    at its two ends."""
    if len(text) <= limit:
        return text
    head = text[: limit * 3 // 5].rsplit(" ", 1)[0]
    tail = text[-(limit - len(head) - 3) :].split(" ", 1)[-1]
    return f"{head} … {tail}"
