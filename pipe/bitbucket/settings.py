"""The reporting settings, validated by :func:`pipe.config.load`: whether to report, where, and with
which Bitbucket credential."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipe.bitbucket.auth import AuthResolution, resolve
from pipe.bitbucket.variables import DEFAULT_API_URL, DEFAULT_PIPELINES_PROXY


@dataclass(frozen=True)
class ReportSettings:
    enabled: bool = True  # REPORT
    api_url: str = DEFAULT_API_URL  # BITBUCKET_API_URL
    pipelines_proxy: str = DEFAULT_PIPELINES_PROXY  # BITBUCKET_PIPELINES_PROXY
    auth: AuthResolution = field(default_factory=AuthResolution)

    @classmethod
    def load(cls, variables: Mapping[str, Any]) -> ReportSettings:
        """From the variables as the schema validated them (REPORT is a boolean there)."""
        return cls(
            enabled=variables.get("REPORT", True) is not False,
            api_url=variables.get("BITBUCKET_API_URL") or DEFAULT_API_URL,
            pipelines_proxy=variables.get("BITBUCKET_PIPELINES_PROXY") or DEFAULT_PIPELINES_PROXY,
            auth=resolve(variables),
        )
