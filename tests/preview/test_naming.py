"""PREVIEW_NAME: the template is checked, renders names, and recognises only the names it made."""

from __future__ import annotations

import pytest

from pipe.errors import ConfigError
from pipe.preview.naming import DEFAULT_TEMPLATE, check_template, pattern, pull_request_of, render


@pytest.mark.parametrize("text", [None, "", "   "])
def test_default_when_unset_or_blank(text: str | None) -> None:
    assert check_template(text) == DEFAULT_TEMPLATE


@pytest.mark.parametrize("text", ["pr-{pr}", "{branch}-{deployment}-{pr}", "  {deployment}-pr-{pr}  "])
def test_valid_templates_are_kept(text: str) -> None:
    assert check_template(text) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "{deployment}-preview",  # no {pr}
        "{deployment}-{branch}",  # no {pr}
        "{user}-{pr}",  # unknown field
        "{}-{pr}",  # positional field
        "{pr.real}",  # attribute access
        "{pr[0]}",  # indexing
        "{deployment}-{pr:03}",  # format spec
        "{deployment}-{pr!r}",  # conversion
        "team/{deployment}-{pr}",  # / in literal text
        "a%b-{pr}",
        "a&b-{pr}",
        "a>b-{pr}",
        "a<b-{pr}",
        "line\nbreak-{pr}",  # control characters
        "tab\t{pr}",
        "del\x7f{pr}",
        "{deployment-{pr}",  # unbalanced
        "{pr",
        "pr}-{pr}",
        "x" * 200 + "{pr}",  # too long
    ],
)
def test_refused_templates_name_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_template(text)
    assert "PREVIEW_NAME" in str(caught.value)


def test_longest_template_is_accepted() -> None:
    text = "x" * (200 - len("{pr}")) + "{pr}"
    assert check_template(text) == text


def test_render_default() -> None:
    assert render(DEFAULT_TEMPLATE, "daily", "12", "main") == "daily-pr-12"


@pytest.mark.parametrize(
    ("branch", "shown"),
    [
        ("feature/x y", "feature-x-y"),
        ("feature//a&b", "feature-a-b"),
        ("/lead/", "lead"),
        ("v1.2_fix-3", "v1.2_fix-3"),
        ("", "branch"),
        (None, "branch"),
        ("///", "branch"),
    ],
)
def test_render_makes_the_branch_safe(branch: str | None, shown: str) -> None:
    assert render("{branch}-{pr}", "d", "3", branch) == f"{shown}-3"


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_TEMPLATE,
        "pr-{pr}",
        "{pr}",
        "preview-{pr}-{deployment}",
        "{branch}-{deployment}-{pr}",
        "pr-{pr}-{deployment}-{pr}",
        "{deployment}.{branch}.{pr}.v2",
    ],
)
@pytest.mark.parametrize("pr", ["1", "7", "1234"])
def test_render_round_trips(template: str, pr: str) -> None:
    name = render(template, "etl-daily-2", pr, "feature/x y")
    assert pull_request_of(template, name) == pr


def test_pr_twice_must_agree() -> None:
    template = "pr-{pr}-{deployment}-{pr}"
    assert pull_request_of(template, "pr-5-etl-5") == "5"
    assert pull_request_of(template, "pr-5-etl-6") is None


@pytest.mark.parametrize("name", ["etl-pr-5-old", "x-etl-pr-5", "etl-pr-", "etl-pr-x", "etl-pr-5\n", "ETL-PR-5"])
def test_names_the_template_did_not_make_do_not_match(name: str) -> None:
    assert pull_request_of("etl-pr-{pr}", name) is None


def test_literal_template_matches_its_own_name() -> None:
    assert pull_request_of("etl-pr-{pr}", "etl-pr-5") == "5"


def test_deployment_field_needs_some_text() -> None:
    assert pull_request_of(DEFAULT_TEMPLATE, "-pr-5") is None
    assert pull_request_of(DEFAULT_TEMPLATE, "production") is None


def test_regex_characters_in_the_template_are_literal() -> None:
    assert pull_request_of("a.b-{pr}", "aXb-5") is None
    assert pull_request_of("a.b-{pr}", "a.b-5") == "5"
    assert pull_request_of("a+b-{pr}", "aab-5") is None
    assert pattern("(x)-{pr}").match("(x)-9") is not None
