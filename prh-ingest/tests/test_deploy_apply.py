"""Writing the plan at the server's pace, each flow created once, and the failure-notification
block a webhook URL gets; in-process (the writes themselves: tests/test_warehouse_deploy.py)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prh_ingest.deploy.apply import FlowIds, Pace
from prh_ingest.deploy.automations import notification_block, notify_url


def busy_response(pace: Pace, retry_after: str | None = None, request=None) -> httpx.Response:
    """A 503 as the server sends it, passed through *pace*'s response hook."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    request = request or httpx.Request("POST", "http://127.0.0.1/api/deployments/")
    response = httpx.Response(503, headers=headers, request=request)
    asyncio.run(pace.on_response(response))
    return response


def test_a_busy_server_is_retried_soon_and_then_written_one_at_a_time() -> None:
    """A 503 without Retry-After (SQLite refusing a colliding writer) gets BUSY_RETRY_AFTER's
    waits, longer for each 503 of the same request; from then on one write at a time."""
    pace = Pace()

    async def write_three() -> int:
        for _ in range(3):
            async with pace:
                pass
        return pace.at_once

    assert asyncio.run(write_three()) == 4  # one at first, one more after each answer
    first = busy_response(pace)
    again = busy_response(pace, request=first.request)
    assert [first.headers["Retry-After"], again.headers["Retry-After"]] == ["0.05", "0.25"]
    assert busy_response(pace).headers["Retry-After"] == "0.05"  # another request's first
    assert busy_response(pace, retry_after="30").headers["Retry-After"] == "30"  # the server's
    assert asyncio.run(write_three()) == 1


def test_each_flow_is_created_once_however_many_deployments_share_it() -> None:
    created: list[str] = []

    class Client:
        async def create_flow_from_name(self, name: str) -> uuid.UUID:
            created.append(name)
            await asyncio.sleep(0.01)  # the others ask meanwhile
            return uuid.uuid5(uuid.NAMESPACE_DNS, name)

    known = uuid.uuid4()
    flow_ids = FlowIds(Client())
    flow_ids.add({known: "read-from-the-server"})

    async def ask() -> list[uuid.UUID]:
        names = ["ingest", "ingest", "other", "ingest", "read-from-the-server"]
        return await asyncio.gather(*(flow_ids.of(name) for name in names))

    ids = asyncio.run(ask())
    assert sorted(created) == ["ingest", "other"]
    assert ids[0] == ids[1] == ids[3] != ids[2] and ids[4] == known


@pytest.mark.parametrize(
    ("url", "block"),
    [
        ("", None),
        ("https://hooks.slack.com/services/T0/B0/x", "SlackWebhook"),
        (
            "https://prod-1.westus.logic.azure.com:443/workflows/w/triggers/manual/paths/invoke"
            "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s",
            "MicrosoftTeamsWebhook",
        ),
        ("https://alerts.example.org/prefect?token=abc", "CustomWebhookNotificationBlock"),
    ],
    ids=["none", "slack", "teams", "custom"],
)
def test_notify_url_picks_the_notification_block(url: str, block: str | None) -> None:
    """The webhook comes from the deploy environment (PRH_NOTIFY_URL), never the repo."""
    assert notify_url({"PRH_NOTIFY_URL": url}) == url
    if block is None:
        return
    chosen = notification_block(url, "ingest")
    assert type(chosen).__name__ == block
    if block == "CustomWebhookNotificationBlock":
        # The URL (and its token) is stored as a block secret, not in plain text.
        assert chosen.url == "{{url}}"
        assert chosen.secrets.get_secret_value() == {"url": url}
        assert chosen.json_data == {"subject": "{{subject}}", "body": "{{body}}"}
