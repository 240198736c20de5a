"""The leak scan: every secret the identity tests create is remembered here, and every piece of
output (stdout/stderr of the process, log records, messages of raised errors) is checked for them."""

from __future__ import annotations

SECRETS: set[str] = set()


def remember(*values: str | None) -> None:
    for value in values:
        if value:
            SECRETS.add(value)


def assert_clean(text: str, where: str = "output") -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into the {where}"
        if ":" in secret:  # user:password — the password alone must not show either
            password = secret.split(":", 1)[1]
            assert len(password) < 8 or password not in text, f"a password leaked into the {where}"


def assert_error_clean(error: BaseException) -> None:
    """The message a user sees, and every exception chained behind it (shown with DEBUG tracebacks)."""
    seen: BaseException | None = error
    while seen is not None:
        assert_clean(str(seen), "error message")
        assert_clean(repr(seen), "error repr")
        seen = seen.__cause__ or seen.__context__
