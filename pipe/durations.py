"""The one way the pipe writes a length of time: in the build log, the summary and the reports."""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """``850ms``, ``12s``, ``3m 05s``, ``1h 02m``; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
