"""What the Prefect API answered, as one line for a person: the cause, the server and the fix.

:meth:`pipe.prefect_api.PrefectApi.translate` wraps every call in :func:`translated`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipe.errors import PrefectError
from pipe.identity import gateway_rule
from pipe.prefect_compat import LOWEST_SUPPORTED, rejected_fields, user_input_rejected
from pipe.remote_text import clipped
from pipe.urls import is_cloud

if TYPE_CHECKING:
    from pipe.prefect_api import PrefectApi


@contextlib.contextmanager
def translated(api: PrefectApi, doing: str) -> Iterator[None]:
    """Turn client exceptions into one line for a person."""
    import httpx

    where = f"the Prefect API at {api.host}"
    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise status_error(api, doing, where, exc.response) from exc
    except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError):
        # The request could not even be built: a header (the credential), the URL or the body holds
        # what cannot be sent. The library's text would quote the header, credential and all: say less.
        raise PrefectError(
            f"the request to {where} could not be sent while {doing}: a value holds characters that cannot"
            " be sent (a line break or non-ASCII character in the credential or URL, or text that is not"
            " valid UTF-8)",
            "check PREFECT_API_KEY or PREFECT_API_AUTH_STRING, PREFECT_API_URL and the values passed to the run",
        ) from None
    except httpx.TimeoutException as exc:
        raise PrefectError(
            f"{where} did not answer in time while {doing} ({type(exc).__name__})",
            "check that the server is up and reachable from the build, then re-run the step",
        ) from exc
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise PrefectError(
            f"cannot reach {where} while {doing}: {reason}",
            "check PREFECT_API_URL and that the server is reachable from Bitbucket Pipelines",
        ) from exc


def unauthorized(api: PrefectApi, doing: str, where: str) -> PrefectError:
    """401: name the credential actually used (its variable), or say that none was given."""
    if api.credential.kind == "none":
        return PrefectError(
            f"{where} requires a credential (401 Unauthorized) while {doing}, and no credential was given",
            "set PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING (a self-hosted server) as a secured "
            "variable, or an identity-first source such as PREFECT_API_KEY_SECRET",
        )
    variable = api.credential.source.split("=", 1)[0].strip()
    fix = (
        f"check that the server (or the gateway in front of it) accepts what {variable} issues for this repository"
        if variable == "TOKEN_EXCHANGE_URL"
        else f"check that {variable} is current and belongs to this server or workspace"
    )
    return PrefectError(
        f"{where} rejected the credential from {api.credential.source} (401 Unauthorized) while {doing}", fix
    )


def status_error(api: PrefectApi, doing: str, where: str, response: Any) -> PrefectError:
    code = response.status_code
    detail = _detail(response)
    if code == 401:
        return unauthorized(api, doing, where)
    if code == 403 and (denied := gateway_rule.denial(_body(response))):
        return PrefectError(f"{where} refused {doing}: {denied.message()}", denied.fix)
    if code == 403:
        return PrefectError(
            f"{where} refused {doing} (403 Forbidden): {detail}",
            "give the key's service account a role that allows it (Runner to run deployments, Developer to deploy)",
        )
    if code == 404 and is_cloud(api.api_url):
        return PrefectError(
            f"{where} answered 404 while {doing}",
            "check the account and workspace ids in PREFECT_API_URL and that the key's account is a member",
        )
    if code == 409 or (code == 422 and user_input_rejected(rejected_fields(_body(response)))):
        return PrefectError(
            f"{where} refused {doing}: {detail}", "fix PARAMETERS or JOB_VARIABLES to match the deployment"
        )
    if code == 422:  # a field this pipe sends that the server does not know
        fields = ", ".join(rejected_fields(_body(response)))
        version = f"Prefect {api.server_version}" if api.server_version else "Prefect, version unknown"
        return PrefectError(
            f"{where} ({version}) did not accept {fields or 'the request'} while {doing}"
            + ("" if fields else f": {detail}"),
            f"this pipe works with Prefect {LOWEST_SUPPORTED} and newer: upgrade the server, or report this"
            " with the server's version",
        )
    if code >= 500 or code == 429:
        return PrefectError(
            f"{where} answered {code} while {doing}: {detail}", "the server is struggling; re-run the step later"
        )
    return PrefectError(f"{where} answered {code} while {doing}: {detail}", "check the request variables")


def status_code(error: PrefectError) -> int | None:
    """The HTTP status behind an error of :func:`translated`, when the API answered one."""
    import httpx

    cause = error.__cause__
    return cause.response.status_code if isinstance(cause, httpx.HTTPStatusError) else None


def _body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: Any) -> str:
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text
    return clipped(str(detail).replace("\n", " ").strip(), 300) or response.reason_phrase
