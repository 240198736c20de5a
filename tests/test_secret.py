"""Secrets redact themselves and are masked wherever they surface."""

from __future__ import annotations

from pipe.secret import Secret, mask


def test_secret_never_shows_itself() -> None:
    secret = Secret("pnu_super-secret-value-123")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,)):  # noqa: UP031
        assert "super-secret" not in shown
    assert secret.reveal() == "pnu_super-secret-value-123"


def test_mask_hides_registered_values_and_url_userinfo() -> None:
    Secret("user:pa55word-xyz")
    text = mask("auth user:pa55word-xyz and pa55word-xyz and https://bob:pw@host/api")
    assert "pa55word-xyz" not in text
    assert "bob:pw" not in text and "https://***@host/api" in text
