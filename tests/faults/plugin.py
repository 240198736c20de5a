"""The ``--run-long`` option of the long fault-injection tier (``make test-long``).

pytest reads command-line options only from the conftest files it loads at start-up, so
``tests/conftest.py`` registers it by calling :func:`add_option`; this directory's conftest reads
it with :func:`run_long` to skip the ``long`` tests unless it is given.
"""

from __future__ import annotations

import contextlib

import pytest

OPTION = "--run-long"


def add_option(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # already added
        parser.addoption(OPTION, action="store_true", default=False, help="run the long fault-injection tier")


def run_long(config: pytest.Config) -> bool:
    return bool(config.getoption(OPTION, default=False))
