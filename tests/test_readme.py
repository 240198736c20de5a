"""The README's variable tables are the schema: every variable the pipe reads is documented, and
every variable documented is one the pipe reads."""

from __future__ import annotations

import re
from pathlib import Path

from pipe.config import SCHEMA

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
# Documented elsewhere than the tables' first column (boto3's standard overrides) or Bitbucket's own.
NOT_IN_SCHEMA = {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"}


def table_variables() -> set[str]:
    names: set[str] = set()
    for line in README.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first))
    return names


def test_every_schema_variable_is_documented() -> None:
    missing = sorted(set(SCHEMA) - table_variables() - {"BITBUCKET_STEP_OIDC_TOKEN"})
    assert not missing, f"variables missing from README tables: {missing}"


def test_every_documented_variable_exists() -> None:
    unknown = sorted(table_variables() - set(SCHEMA) - NOT_IN_SCHEMA)
    assert not unknown, f"README documents variables the pipe does not read: {unknown}"


def test_the_yaml_definition_lists_every_variable() -> None:
    start = README.index("## YAML Definition")
    block = README[start : README.index("```\n", README.index("```yaml", start) + 7)]
    listed = set(re.findall(r"^\s+#?\s*([A-Z][A-Z0-9_]+):", block, re.MULTILINE))
    missing = sorted(set(SCHEMA) - listed - {"BITBUCKET_STEP_OIDC_TOKEN"})
    assert not missing, f"the YAML Definition does not list: {missing}"
