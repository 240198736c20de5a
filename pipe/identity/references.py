"""Secret references: ``<scheme>:<reference>[#field]``, and taking a field out of a fetched value.

==========  ================================================  ===========================
scheme      reference                                         provider
==========  ================================================  ===========================
aws-sm      secret name or ARN                                AWS Secrets Manager
aws-ssm     parameter name (``/prefect/ci``) or ARN           AWS SSM Parameter Store
gcp-sm      ``projects/<p>/secrets/<s>[/versions/<v>]``       Google Secret Manager
vault       API path, KV v2 with ``data/`` (``#field`` req.)  Vault / OpenBao
==========  ================================================  ===========================

With ``#field`` the stored value is a JSON object and that field is used; without it, the whole value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pipe.errors import ConfigError, IdentityError
from pipe.secret import Secret

SCHEMES = {"aws-sm": "aws", "aws-ssm": "aws", "gcp-sm": "gcp", "vault": "vault"}
EXAMPLES = "'aws-sm:prefect/ci#api_key', 'aws-ssm:/prefect/ci', 'gcp-sm:projects/my-proj/secrets/prefect', 'vault:secret/data/prefect/ci#api_key'"

_AWS_SM_NAME = re.compile(r"^[\w/+=.@-]{1,512}$")
_AWS_SM_ARN = re.compile(r"^arn:aws[\w-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:[\w/+=.@-]+$")
_AWS_SSM_NAME = re.compile(r"^/?[\w.-]+(/[\w.-]+)*$")
_AWS_SSM_ARN = re.compile(r"^arn:aws[\w-]*:ssm:(?P<region>[a-z0-9-]+):\d{12}:parameter/[\w./-]+$")
_GCP_SM = re.compile(
    r"^projects/(?P<project>[\w.:-]+)/secrets/(?P<secret>[\w-]{1,255})(/versions/(?P<version>latest|\d+|[\w-]+))?$"
)
_VAULT_PATH = re.compile(r"^[\w.@+=~-]+(/[\w.@+=~-]+)*$")
_FIELD = re.compile(r"^[^\s#]{1,256}$")


@dataclass(frozen=True)
class SecretRef:
    variable: str  # PREFECT_API_KEY_SECRET or PREFECT_API_AUTH_STRING_SECRET
    scheme: str
    path: str
    field: str | None = None

    @property
    def provider(self) -> str:
        return SCHEMES[self.scheme]

    @property
    def region(self) -> str | None:
        """The region named by an AWS ARN reference, if any."""
        for pattern in (_AWS_SM_ARN, _AWS_SSM_ARN):
            match = pattern.match(self.path)
            if match:
                return match.group("region")
        return None

    @property
    def gcp_version_name(self) -> str:
        """``projects/p/secrets/s/versions/v`` (``latest`` when no version is given)."""
        return self.path if "/versions/" in self.path else f"{self.path}/versions/latest"

    def __str__(self) -> str:
        return f"{self.scheme}:{self.path}" + (f"#{self.field}" if self.field else "")


def parse(variable: str, text: str) -> SecretRef:
    """Parse a reference, failing with a :class:`ConfigError` that names ``variable`` and shows the syntax."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in SCHEMES:
        raise ConfigError(
            f"{variable} must start with one of {', '.join(s + ':' for s in SCHEMES)} (got {scheme or 'nothing'!r})",
            f"use e.g. {EXAMPLES}",
        )
    path, hash_, field = rest.partition("#")
    path = path.strip()
    if scheme == "vault":
        path = path.strip("/")
    if hash_ and not _FIELD.match(field):
        raise ConfigError(
            f"{variable} has an empty or malformed #field", "write the JSON field name after #, e.g. '#api_key'"
        )
    ref = SecretRef(variable=variable, scheme=scheme, path=path, field=field if hash_ else None)
    _check_path(ref)
    return ref


def _check_path(ref: SecretRef) -> None:
    def bad(shape: str) -> ConfigError:
        return ConfigError(f"{ref.variable} has a malformed {ref.scheme} reference {ref.path!r}", f"use {shape}")

    if not ref.path:
        raise bad(f"'{ref.scheme}:<reference>', e.g. {EXAMPLES}")
    if ref.scheme == "aws-sm":
        if ref.path.startswith("arn:"):
            if not _AWS_SM_ARN.match(ref.path):
                raise bad("arn:aws:secretsmanager:<region>:<account>:secret:<name> or the secret's name")
        elif not _AWS_SM_NAME.match(ref.path):
            raise bad("the secret's name (letters, digits and /_+=.@-) or its ARN")
    elif ref.scheme == "aws-ssm":
        if ref.path.startswith("arn:"):
            if not _AWS_SSM_ARN.match(ref.path):
                raise bad("arn:aws:ssm:<region>:<account>:parameter/<name> or the parameter's name")
        elif not _AWS_SSM_NAME.match(ref.path):
            raise bad("the parameter's name, e.g. '/prefect/ci/api-key'")
    elif ref.scheme == "gcp-sm":
        if not _GCP_SM.match(ref.path):
            raise bad("'gcp-sm:projects/<project>/secrets/<secret>' or '.../versions/<n|latest>'")
    elif ref.scheme == "vault":
        if not _VAULT_PATH.match(ref.path) or ".." in ref.path.split("/"):
            raise bad(
                "the API path after /v1/, e.g. 'vault:secret/data/prefect/ci#api_key' (KV v2 paths include data/)"
            )
        if ref.path.startswith("v1/"):
            raise bad("the path without the leading v1/, e.g. 'vault:secret/data/prefect/ci#api_key'")
        if not ref.field:
            raise ConfigError(
                f"{ref.variable} names a Vault secret but no #field",
                f"append the key inside the secret, e.g. 'vault:{ref.path}#api_key'",
            )


def pick(ref: SecretRef, raw: str, where: str) -> Secret:
    """The credential out of a fetched value: the whole value, or ``#field`` of a JSON object.

    ``where`` names the hop for messages. Neither the value nor any part of it is ever put in a message.
    """
    whole = Secret(raw)  # mask the raw value (and JSON around the field) should anything echo it
    if ref.field is None:
        return _non_empty(ref, whole.reveal().strip(), where)
    try:
        document = json.loads(whole.reveal())
    except ValueError:
        raise IdentityError(
            f"{where} returned a value that is not JSON, so {ref.variable}'s #{ref.field} cannot be taken from it",
            f'store a JSON object such as {{"{ref.field}": "..."}}, or drop \'#{ref.field}\' to use the whole value',
        ) from None
    if not isinstance(document, dict):
        raise IdentityError(
            f"{where} returned JSON that is not an object, so #{ref.field} cannot be taken from it",
            f'store a JSON object such as {{"{ref.field}": "..."}}',
        )
    return pick_field(ref, document, where)


def pick_field(ref: SecretRef, document: dict[str, object], where: str) -> Secret:
    """``ref.field`` out of an already-decoded object (a Vault secret's ``data``)."""
    if ref.field not in document:
        names = ", ".join(sorted(str(k) for k in document)[:20]) or "none"
        raise IdentityError(
            f"{where} has no field {ref.field!r} (its fields: {names})",
            f"fix the #field part of {ref.variable}",
        )
    value = document[ref.field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IdentityError(
            f"{where} has a field {ref.field!r} that is a JSON {type(value).__name__}, not a string",
            "store the Prefect credential as a plain string value",
        )
    return _non_empty(ref, str(value).strip(), where)


def _non_empty(ref: SecretRef, value: str, where: str) -> Secret:
    if not value:
        raise IdentityError(f"{where} returned an empty value for {ref}", "store the Prefect credential in it")
    return Secret(value)
