"""The ``--run-long`` option of the long fault-injection tier (``make test-long``).

pytest reads command-line options only from plugins and the conftest files it loads at start-up
(``tests/conftest.py``, not this directory's), so ``tests/conftest.py`` names this module in
``pytest_plugins``. ``tests/faults/conftest.py`` registers the option too, for runs that start in
this directory; whichever comes second finds it there already.
"""

from __future__ import annotations

import contextlib

import pytest

OPTION = "--run-long"


def add_option(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # already added (by the other of the two places)
        parser.addoption(OPTION, action="store_true", default=False, help="run the long fault-injection tier")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_option(parser)


def run_long(config: pytest.Config) -> bool:
    return bool(config.getoption(OPTION, default=False))
