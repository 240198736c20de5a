"""The fixture of the deploy tests: a fresh git repository per test (see ``repo.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.repo import Repo


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")
