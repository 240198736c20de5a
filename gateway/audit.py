"""One JSON line per request on stdout: who (claims), what (method, path, deployment, flow run), the
decision and the rules behind it, the upstream's status and the duration. Never a token or credential."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.policy import SHOWN_CLAIMS


def shown_claims(claims: Mapping[str, Any] | None) -> dict[str, Any]:
    """The claims an audit line or a denial quotes (identifying the build, never the token)."""
    if not claims:
        return {}
    return {name: claims[name] for name in SHOWN_CLAIMS if name in claims}


class Record:
    """The audit line of one request, filled in as the request goes and written once."""

    def __init__(self, method: str, path: str) -> None:
        self._started = time.perf_counter()
        self.fields: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "decision": "deny",
            "rules": [],
            "claims": {},
            "method": method,
            "path": path,
        }

    def set(self, **fields: Any) -> None:
        self.fields.update({k: v for k, v in fields.items() if v is not None})

    def write(self) -> None:
        self.fields["duration_ms"] = round((time.perf_counter() - self._started) * 1000, 2)
        sys.stdout.write(json.dumps(self.fields, separators=(",", ":"), default=str) + "\n")
        sys.stdout.flush()
