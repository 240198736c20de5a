"""The preview tests deploy from a git repository made per test, as the deploy tests do."""

from tests.deploy.conftest import repo  # noqa: F401 - the fixture
