"""The plainest leak check: none of the given secrets, nor the password part of a ``user:password``,
appears in a piece of output. The identity and fault tiers keep their own wider scans
(``tests/identity/leaks.py``, ``tests/faults/leakscan.py``)."""

from __future__ import annotations


def assert_no_secrets(output: str, *secrets: str) -> None:
    for secret in secrets:
        if not secret:
            continue
        assert secret not in output, "a secret appeared in the output"
        if ":" in secret:  # user:password — the password alone must not appear either
            assert secret.split(":", 1)[1] not in output, "a password appeared in the output"
