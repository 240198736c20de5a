"""Links to the Prefect UI."""

from pipe.prefect_api import flow_run_ui_url


def test_cloud_url() -> None:
    api = "https://api.prefect.cloud/api/accounts/acc-1/workspaces/ws-2"
    assert flow_run_ui_url(api, None, "r1") == "https://app.prefect.cloud/account/acc-1/workspace/ws-2/runs/flow-run/r1"


def test_self_hosted_url() -> None:
    assert (
        flow_run_ui_url("https://prefect.example.com/api", None, "r1") == "https://prefect.example.com/runs/flow-run/r1"
    )
    assert (
        flow_run_ui_url("https://x/api", "https://ui.example.com/", "r1") == "https://ui.example.com/runs/flow-run/r1"
    )
