"""Hostile input: a corpus of bad variables, each of which must give exactly one ✖ line, exit 1, no
traceback, nothing created on the server and nothing secret printed; and property-based tests of the
parsing (``pipe.config``) over arbitrary text.

Inputs that fail validation never reach the network, so they run in-process through ``pipe.main``
(fast); those that need the server to be refused (unknown deployments, parameters that do not match
the flow, credentials the server rejects) and a sample of the others run end to end as
``python -m pipe`` against the real server, with the server's run count checked before and after.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipe import config as pipe_config
from pipe import main, urls, values
from pipe.errors import ConfigError
from tests.faults import checks, leakscan
from tests.support.pipe import BITBUCKET_ENV, PipeResult, run_pipe
from tests.support.prefect_server import AUTH_STRING, PrefectInspector, PrefectServer

# A Prefect Cloud-shaped key, used where a case sends an API key instead of the auth string.
API_KEY = "pnu_" + "Q7x9" * 9
WRONG_PASSWORD = "prefect-admin:not-the-password-Z9"
URL_PASSWORD = "hunter2-Hunter2-url-password"
leakscan.remember(API_KEY, WRONG_PASSWORD, URL_PASSWORD)
UNKNOWN_ID = "6f1e7c1a-1d1f-4a53-9a64-5f0e8f3b2c11"
MEGABYTE = "x" * (1 << 20)


@dataclass(frozen=True)
class Case:
    """One bad input: the variables it sets over a valid step, and words the ✖ line must hold.
    ``server``: refused only once the pipe runs (by the server, or by a step after validation), so
    end to end only; ``e2e``: also end to end. ``bug``: a known defect outside the files of this
    suite (the test is a strict xfail that names the fix, and turns red once fixed)."""

    id: str
    env: Mapping[str, str]
    expect: tuple[str, ...] = ()
    server: bool = False
    e2e: bool = False
    bug: str | None = None
    secrets: tuple[str, ...] = field(default=())


C = Case
CORPUS: list[Case] = [
    # -- malformed JSON, huge values --
    C("params-unterminated", {"PARAMETERS": "{oops"}, ("PARAMETERS", "not valid JSON"), e2e=True),
    C("params-array", {"PARAMETERS": "[1, 2, 3]"}, ("PARAMETERS", "JSON object")),
    C("params-string", {"PARAMETERS": '"text"'}, ("PARAMETERS", "JSON object")),
    C("params-null", {"PARAMETERS": "null"}, ("PARAMETERS", "JSON object")),
    C("params-number", {"PARAMETERS": "42"}, ("PARAMETERS", "JSON object")),
    C("params-single-quotes", {"PARAMETERS": "{'name': 'x'}"}, ("PARAMETERS", "not valid JSON")),
    C("params-truncated", {"PARAMETERS": '{"name": "x"'}, ("PARAMETERS", "not valid JSON")),
    C("params-two-objects", {"PARAMETERS": '{"a": 1}{"b": 2}'}, ("PARAMETERS", "not valid JSON")),
    C("params-nested-100k", {"PARAMETERS": "[" * 100_000}, ("PARAMETERS",)),
    C("params-1mb", {"PARAMETERS": '{"name": "' + MEGABYTE + '"}'}, ("PARAMETERS", "KiB")),  # above execve's 128 KiB
    C("params-bom", {"PARAMETERS": "\ufeff{}"}, ("PARAMETERS", "not valid JSON")),
    C(
        "params-invalid-utf8",
        {"PARAMETERS": '{"name": "caf\udce9"}'},  # the byte 0xE9 alone: os.environ holds it as \udce9
        ("PARAMETERS",),
        e2e=True,
    ),
    C("job-vars-array", {"JOB_VARIABLES": "[]"}, ("JOB_VARIABLES", "JSON object")),
    C("job-vars-broken", {"JOB_VARIABLES": '{"env": '}, ("JOB_VARIABLES", "not valid JSON")),
    C("job-vars-1mb", {"JOB_VARIABLES": '{"env": {"A": "' + MEGABYTE + '"}}'}, ("JOB_VARIABLES", "KiB")),
    # -- values the flow does not accept (the flow's schema is on the server) --
    C("params-unknown-name", {"PARAMETERS": '{"nme": "x"}'}, ("'nme'",), server=True),
    C("params-wrong-type", {"PARAMETERS": '{"count": "three"}'}, ("'count'",), server=True),
    C("params-nan", {"PARAMETERS": '{"name": NaN}'}, ("'name'",), server=True),
    C("params-infinity", {"PARAMETERS": '{"count": Infinity}'}, ("'count'",), server=True),
    C("params-list-for-int", {"PARAMETERS": '{"count": [1]}'}, ("'count'",), server=True),
    C("params-control-name", {"PARAMETERS": '{"na\\u0000me": 1}'}, ("PARAMETERS",), server=True),
    C("params-sql-name", {"PARAMETERS": '{"name\\"; DROP TABLE flow_run; --": 1}'}, ("PARAMETERS",), server=True),
    C(
        "params-5000-names",
        {"PARAMETERS": json.dumps({f"k{i}": i for i in range(5000)})},
        ("PARAMETERS",),
        server=True,
    ),
    C(
        "params-lone-surrogate",
        {"PARAMETERS": '{"name": "\\ud800"}'},
        ("PARAMETERS",),
        server=True,
    ),
    # -- wrong types --
    C("timeout-word", {"TIMEOUT": "soon"}, ("TIMEOUT",), e2e=True),
    C("timeout-negative", {"TIMEOUT": "-5"}, ("TIMEOUT",)),
    C("timeout-zero", {"TIMEOUT": "0"}, ("TIMEOUT",)),
    C("timeout-huge", {"TIMEOUT": "99999999999999999999"}, ("TIMEOUT",)),
    C("timeout-float", {"TIMEOUT": "1.5"}, ("TIMEOUT",)),
    C("timeout-list", {"TIMEOUT": "[1]"}, ("TIMEOUT",)),
    C(
        "timeout-true",
        {"TIMEOUT": "true"},
        ("TIMEOUT",),
    ),
    C("wait-number", {"WAIT": "2"}, ("WAIT",)),
    C("wait-word", {"WAIT": "maybe"}, ("WAIT",)),
    C("dry-run-list", {"DRY_RUN": "[]"}, ("DRY_RUN",)),
    C("cancel-map", {"CANCEL_ON_TIMEOUT": "{}"}, ("CANCEL_ON_TIMEOUT",)),
    C("commit-params-typo", {"COMMIT_PARAMETERS": "truee"}, ("COMMIT_PARAMETERS",)),
    C("action-unknown", {"ACTION": "destroy"}, ("ACTION",), e2e=True),
    C("action-injection", {"ACTION": "run; rm -rf /"}, ("ACTION",)),
    C(
        "action-log-injection",
        {"ACTION": "run\n✔ Flow run completed"},
        ("ACTION",),
        e2e=True,
    ),
    C("action-empty", {"ACTION": ""}, ("ACTION",)),
    C(
        "action-is-the-credential",
        {"ACTION": AUTH_STRING},
        ("ACTION",),
        server=True,  # in-process, an earlier test has registered the same credential for masking
    ),
    C(
        "debug-one",
        {"DEBUG": "1"},
        ("DEBUG",),
    ),
    # -- TAGS and TAGS_COUNT --
    C("tags-count-word", {"TAGS_COUNT": "abc"}, ("TAGS_COUNT",), e2e=True),
    C("tags-count-negative", {"TAGS_COUNT": "-1"}, ("TAGS_COUNT",)),
    C("tags-count-huge", {"TAGS_COUNT": "100000"}, ("TAGS_COUNT",)),
    C("tags-count-float", {"TAGS_COUNT": "1.0"}, ("TAGS_COUNT",)),
    C("tags-missing-item", {"TAGS_COUNT": "2", "TAGS_0": "a"}, ("TAGS",)),
    C("tags-empty", {"TAGS_COUNT": "1", "TAGS_0": ""}, ("TAGS",)),
    C("tags-newline", {"TAGS_COUNT": "1", "TAGS_0": "a\nb"}, ("TAGS",)),
    C("tags-escape-sequence", {"TAGS_COUNT": "1", "TAGS_0": "\x1b[31mred"}, ("TAGS",), e2e=True),
    C("tags-long", {"TAGS_COUNT": "1", "TAGS_0": "x" * 201}, ("TAGS",)),
    # -- names: injection attempts, control characters, unicode --
    C("deployment-bare-word", {"DEPLOYMENT": "greet"}, ("DEPLOYMENT",)),
    C("deployment-short-uuid", {"DEPLOYMENT": UNKNOWN_ID[:-1]}, ("DEPLOYMENT",), e2e=True),
    C("deployment-uuid-junk", {"DEPLOYMENT": UNKNOWN_ID + "x"}, ("DEPLOYMENT",)),
    C("deployment-traversal", {"DEPLOYMENT": "../../etc/passwd"}, ("DEPLOYMENT",)),
    C("deployment-percent", {"DEPLOYMENT": "greet/%2e%2e"}, ("DEPLOYMENT",)),
    C("deployment-empty-flow", {"DEPLOYMENT": "/ci"}, ("DEPLOYMENT",)),
    C("deployment-empty-name", {"DEPLOYMENT": "greet/"}, ("DEPLOYMENT",)),
    C("deployment-newline", {"DEPLOYMENT": "greet/ci\nX-Injected: 1"}, ("DEPLOYMENT",)),
    C("deployment-600-chars", {"DEPLOYMENT": "g/" + "x" * 600}, ("DEPLOYMENT",)),
    C("deployment-html", {"DEPLOYMENT": "greet/<script>"}, ("DEPLOYMENT",)),
    C("deployment-empty", {"DEPLOYMENT": ""}, ("DEPLOYMENT",)),
    C("deployment-sql", {"DEPLOYMENT": "greet/ci'; DROP TABLE deployment;--"}, ("not found",), server=True),
    C("deployment-query", {"DEPLOYMENT": "greet/ci?x=1"}, ("not found",), server=True),
    C("deployment-fragment", {"DEPLOYMENT": "greet/ci#x"}, ("not found",), server=True),
    C("deployment-dot-dot-flow", {"DEPLOYMENT": "../ci"}, ("not found",), server=True),
    C("deployment-dot-dot-name", {"DEPLOYMENT": "greet/.."}, ("not found",), server=True),
    C("deployment-unicode", {"DEPLOYMENT": "grüße/ci"}, ("not found",), server=True),
    C("deployment-rtl-override", {"DEPLOYMENT": "greet/\u202eic"}, ("not found",), server=True),
    C("deployment-unknown-id", {"DEPLOYMENT": UNKNOWN_ID}, ("not found",), server=True),
    C("deployment-invalid-utf8", {"DEPLOYMENT": "greet/c\udce9"}, ("DEPLOYMENT", "UTF-8"), server=True),
    C("flow-run-name-invalid-utf8", {"FLOW_RUN_NAME": "run-\udce9"}, ("FLOW_RUN_NAME", "UTF-8"), server=True),
    C("flow-run-name-bell", {"FLOW_RUN_NAME": "\x07bell"}, ("FLOW_RUN_NAME",)),
    C("flow-run-name-long", {"FLOW_RUN_NAME": "n" * 300}, ("FLOW_RUN_NAME",)),
    C("work-queue-slash", {"WORK_QUEUE_NAME": "a/b"}, ("WORK_QUEUE_NAME",)),
    C("work-queue-html", {"WORK_QUEUE_NAME": "<q>"}, ("WORK_QUEUE_NAME",)),
    C("idempotency-key-crlf", {"IDEMPOTENCY_KEY": "k\r\nX-Injected: 1"}, ("IDEMPOTENCY_KEY",)),
    C("idempotency-key-long", {"IDEMPOTENCY_KEY": "k" * 1000}, ("IDEMPOTENCY_KEY",)),
    # -- URLs: credentials in them, other schemes, malformed --
    C("url-ftp", {"PREFECT_API_URL": "ftp://127.0.0.1/api"}, ("PREFECT_API_URL",)),
    C("url-file", {"PREFECT_API_URL": "file:///etc/passwd"}, ("PREFECT_API_URL",), e2e=True),
    C("url-javascript", {"PREFECT_API_URL": "javascript:alert(1)"}, ("PREFECT_API_URL",)),
    C(
        "url-credentials",
        {"PREFECT_API_URL": f"http://admin:{URL_PASSWORD}@127.0.0.1:{{port}}/api"},
        ("PREFECT_API_URL", "credentials"),
        e2e=True,
    ),
    C(
        "url-auth-string-in-it",
        {"PREFECT_API_URL": f"https://{AUTH_STRING}@prefect.example.com/api"},
        ("PREFECT_API_URL",),
        e2e=True,
    ),
    C("url-port-out-of-range", {"PREFECT_API_URL": "http://127.0.0.1:99999/api"}, ("PREFECT_API_URL",)),
    C("url-port-word", {"PREFECT_API_URL": "http://127.0.0.1:abc/api"}, ("PREFECT_API_URL",)),
    C("url-no-host", {"PREFECT_API_URL": "http:///api"}, ("PREFECT_API_URL",)),
    C("url-empty", {"PREFECT_API_URL": ""}, ("PREFECT_API_URL",)),
    C("url-spaces", {"PREFECT_API_URL": "http://127.0.0.1 /api"}, ("PREFECT_API_URL",)),
    C("url-header-injection", {"PREFECT_API_URL": "http://127.0.0.1/api\r\nX-Evil: 1"}, ("PREFECT_API_URL",)),
    C("url-ui-not-api", {"PREFECT_API_URL": "https://app.prefect.cloud/account/a/workspace/w"}, ("PREFECT_API_URL",)),
    C("url-plain-http-remote", {"PREFECT_API_URL": "http://prefect.example.com/api"}, ("https://",), server=True),
    C(
        "url-broken-ipv6",
        {"PREFECT_API_URL": "http://[::1/api"},
        ("PREFECT_API_URL",),
    ),
    C(
        "url-query",
        {"PREFECT_API_URL": "http://127.0.0.1:{port}/api?token=abc"},
        ("PREFECT_API_URL",),
        server=True,
    ),
    C("ui-url-javascript", {"PREFECT_UI_URL": "javascript:alert(1)"}, ("PREFECT_UI_URL",)),
    # -- credentials --
    C("auth-no-colon", {"PREFECT_API_AUTH_STRING": "no-colon-secret-value"}, ("PREFECT_API_AUTH_STRING",)),
    C("key-and-auth-both", {"PREFECT_API_KEY": API_KEY}, ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")),
    C(
        "auth-wrong-password",
        {"PREFECT_API_AUTH_STRING": WRONG_PASSWORD},
        ("401", "PREFECT_API_AUTH_STRING"),
        server=True,
    ),
    C("api-key-rejected", {"PREFECT_API_AUTH_STRING": "", "PREFECT_API_KEY": API_KEY}, ("401",), server=True),
    C(
        "api-key-crlf",
        {"PREFECT_API_AUTH_STRING": "", "PREFECT_API_KEY": API_KEY + "\r\nX-Injected: 1"},
        ("PREFECT_API_KEY", "line break"),
        server=True,
    ),
    C(
        "api-key-non-ascii",
        {"PREFECT_API_AUTH_STRING": "", "PREFECT_API_KEY": "pnu_ключ-ключ-ключ-ключ-ключ-ключ"},
        ("PREFECT_API_KEY",),
        server=True,
        secrets=("pnu_ключ-ключ-ключ-ключ-ключ-ключ",),
    ),
]
BY_ID = {case.id: case for case in CORPUS}
CONFIG_CASES = [c for c in CORPUS if not c.server]
E2E_CASES = [c for c in CORPUS if c.server or c.e2e]


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


def base_env(api_url: str, tmp: Path) -> dict[str, str]:
    return {
        **BITBUCKET_ENV,
        "BITBUCKET_STEP_UUID": checks.step_uuid(),
        "BITBUCKET_CLONE_DIR": str(tmp),
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_AUTH_STRING": AUTH_STRING,
        "DEPLOYMENT": "greet/ci",
        "WAIT": "false",
        "REPORT": "false",
    }


def case_env(case: Case, api_url: str, tmp: Path) -> dict[str, str]:
    port = api_url.rsplit(":", 1)[1].split("/")[0]
    env = base_env(api_url, tmp)
    if not any(k.startswith("TAGS") for k in case.env):  # a tag that would find a run this case created
        env.update(TAGS_COUNT="1", TAGS_0=f"hostile-{case.id}")
    env.update({k: v.replace("{port}", port) for k, v in case.env.items()})
    return env


def assert_refused(case: Case, result: PipeResult) -> None:
    """One ✖ line holding the expected words (and no ✔), exit 1, no traceback, no secret."""
    output = checks.plain(result.output)
    assert result.code == 1, str(result)
    fails = checks.fail_lines(output)
    assert len(fails) == 1, str(result)
    assert "✔" not in output, str(result)
    for word in case.expect:
        assert word in fails[0], str(result)
    assert len(fails[0]) < 2000, f"the ✖ line is {len(fails[0])} characters long"
    assert not checks.own_tracebacks(output) and "Exception ignored" not in output, str(result)
    assert "Unexpected error" not in fails[0], str(result)
    leakscan.assert_clean(output, extra=case.secrets)


# -- in-process: everything refused before the network ---------------------------------------------


@pytest.fixture()
def in_process(capfd: pytest.CaptureFixture[str]) -> object:
    """Run ``pipe.main.main()`` with exactly the given variables as its environment. (``pipe.main`` is
    imported with this module: the toolkit's log handler must be made outside pytest's capture.)"""
    import logging

    def run(env: dict[str, str]) -> PipeResult:
        # console.setup points every handler of the root logger at sys.stdout, pytest's own too:
        # give each its stream back as soon as the pipe is done.
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        streams = [(h, h.stream) for h in handlers]
        capfd.readouterr()
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(os, "environ", dict(env))
                code = main.main()
        finally:
            for handler, stream in streams:
                handler.stream = stream
        out, err = capfd.readouterr()
        return PipeResult(code, out + err)

    return run


@pytest.mark.parametrize("case", [_param(c) for c in CONFIG_CASES])
def test_refused_before_the_network(case: Case, in_process: object, tmp_path: Path) -> None:
    env = case_env(case, "http://127.0.0.1:9/api", tmp_path)  # nothing listens there
    with pytest.raises(ConfigError):
        pipe_config.load(env)
    result = in_process(env)  # type: ignore[operator]
    assert_refused(case, result)


# -- end to end against the real server -------------------------------------------------------------


@dataclass
class Batch:
    results: dict[str, PipeResult]
    runs_before: int
    runs_after: int


@pytest.fixture(scope="module")
def e2e_batch(
    prefect_server: PrefectServer, prefect: PrefectInspector, tmp_path_factory: pytest.TempPathFactory
) -> Batch:
    """Every end-to-end case as ``python -m pipe``, four at a time; the server's run count around it."""
    before = checks.count_runs(prefect)

    def one(case: Case) -> tuple[str, PipeResult]:
        tmp = tmp_path_factory.mktemp(case.id)
        return case.id, run_pipe(case_env(case, prefect_server.api_url, tmp), timeout=180)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(one, E2E_CASES))
    return Batch(results, before, checks.count_runs(prefect))


@pytest.mark.prefect
@pytest.mark.parametrize("case", [_param(c) for c in E2E_CASES])
def test_refused_end_to_end(case: Case, e2e_batch: Batch, prefect: PrefectInspector) -> None:
    result = e2e_batch.results[case.id]
    if not any(k.startswith("TAGS") for k in case.env):
        assert checks.runs_with_tag(prefect, f"hostile-{case.id}") == [], str(result)
    assert_refused(case, result)


@pytest.mark.prefect
def test_the_corpus_created_nothing(e2e_batch: Batch) -> None:
    assert len(E2E_CASES) >= 20 and len(CORPUS) >= 50
    assert e2e_batch.runs_after == e2e_batch.runs_before


# -- properties of the parsing ----------------------------------------------------------------------

SECRET = "s3cr3t-Hyp0thesis-key-Zq"
VARIABLES = [
    "PREFECT_API_URL",
    "PREFECT_UI_URL",
    "DEPLOYMENT",
    "PARAMETERS",
    "JOB_VARIABLES",
    "FLOW_RUN_NAME",
    "WORK_QUEUE_NAME",
    "IDEMPOTENCY_KEY",
    "TIMEOUT",
    "WAIT",
    "ACTION",
    "TAGS_COUNT",
    "TAGS_0",
]
# Pieces that make URLs, JSON and names interesting, mixed with arbitrary text.
PIECES = st.sampled_from(
    ["http://", "https://", "//", "[", "]", ":", "@", "/", "?", "#", "%", "127.0.0.1", "::1", "80", "{", "}", '"',
     ",", "null", "true", "1e999", "-", "\n", "\x00", "\ud800", "é", "/api", "..", " ", "\\"]
)  # fmt: skip
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=12).map("".join)


CREDENTIAL = st.tuples(TEXT, TEXT).map(lambda around: around[0] + SECRET + around[1])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(VARIABLES), TEXT, max_size=5),
    st.sampled_from(["PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"]),
    CREDENTIAL,
)
def test_load_raises_only_config_errors_and_never_shows_the_secret(
    variables: dict[str, str], credential_variable: str, credential: str
) -> None:
    env = {"PREFECT_API_URL": "https://prefect.example.com/api", "DEPLOYMENT": "greet/ci", **variables}
    env[credential_variable] = credential
    try:
        config = pipe_config.load(env)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message.strip(), message
        leakscan.assert_clean(message, extra=[SECRET], where="error message")
        return
    # What passes is what the rest of the pipe relies on.
    assert config.api_url.startswith(("http://", "https://")) and config.timeout >= 1
    assert isinstance(config.parameters, dict)
    assert all(isinstance(t, str) and t.strip() == t and t for t in config.tags)
    assert len(config.targets) == 1
    assert config.targets[0].ref.is_id or config.targets[0].ref.text.count("/") == 1
    assert SECRET not in repr(config)  # the credential is a Secret, redacted


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_json_objects_parse_or_refuse_in_one_line(text: str) -> None:
    try:
        value = values.parse_json_object("PARAMETERS", text)
    except ConfigError as exc:
        assert str(exc).startswith("PARAMETERS") and "\n" not in str(exc)
        return
    assert value is None or isinstance(value, dict)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_deployment_refs_are_a_name_pair_or_an_id(text: str) -> None:
    try:
        ref = values.parse_deployment(text)
    except ConfigError as exc:
        assert str(exc).startswith("DEPLOYMENT")
        return
    if ref.is_id:
        assert str(ref.id) == ref.text.lower() or ref.id is not None
    else:
        flow, name = ref.text.split("/")
        assert flow.strip() and name.strip() and not set("/%&><") & set(flow + name)
        assert not re.search(r"[\x00-\x1f\x7f]", ref.text)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=6))
def test_tags_are_clean_or_refused(tags: list[str]) -> None:
    try:
        clean = values.parse_tags(tags)
    except ConfigError as exc:
        assert str(exc).startswith("TAGS")
        return
    assert len(clean) == len(tags)
    assert all(t and t == t.strip() and len(t) <= 200 and not re.search(r"[\x00-\x1f\x7f]", t) for t in clean)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_urls_are_http_with_a_host_and_no_credentials(text: str) -> None:
    try:
        url = values.parse_api_url(text)
    except ConfigError as exc:
        assert str(exc).startswith("PREFECT_API_URL")
        return
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname and "@" not in parts.netloc


@pytest.mark.parametrize("url", ["http://[::1/api", "http://]/api", "https://[not-an-ip]/api"])
def test_urls_with_a_broken_ipv6_host_are_a_config_error(url: str) -> None:
    """A host that is not a valid IPv6 literal is a config error, not an unexpected one."""
    with pytest.raises(ConfigError):
        urls.parse_http_url("PREFECT_API_URL", url)
