"""Reporting back to Bitbucket: commit build statuses and a Code Insights report for each flow run.

``pipe.config`` imports :mod:`pipe.bitbucket.variables` at start-up, which runs this file first, so
:class:`Reporter` (and with it the HTTP client) is imported only when it is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipe.bitbucket.reporter import Reporter

__all__ = ["Reporter"]


def __getattr__(name: str) -> Any:
    if name == "Reporter":
        from pipe.bitbucket.reporter import Reporter

        return Reporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
