"""The Slack stand-in speaks Slack's wire format to the real ``slack_sdk`` clients.

Every test goes through ``slack_sdk.WebClient`` (or ``WebhookClient`` for response_url), so the
SDK's own encoding (JSON bodies for chat.*/views.*, form bodies for auth.test and
usergroups.users.list, ``Authorization: Bearer``), its ``SlackApiError`` on ``ok: false`` and its
retry handlers' reading of ``Retry-After`` are what is exercised, not a mock of them.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from bot.sim.slack import SlackStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ALERTS = "C0ALERTS01"


@pytest.fixture
def client(slack: SlackStandIn) -> WebClient:
    # No retry handlers: each test adds the ones it is about (the default one retries
    # connection errors after a back-off, which would only slow the failure tests down).
    return WebClient(token=slack.token, base_url=slack.api_url, retry_handlers=[])


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


# -- basics ------------------------------------------------------------------------------------
def test_api_url_is_a_webclient_base_url(slack: SlackStandIn) -> None:
    assert slack.api_url == f"http://127.0.0.1:{slack.port}/api/"


def test_auth_test_identity(slack: SlackStandIn, client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] is True
    assert resp["team_id"] == slack.team_id
    assert resp["user_id"] == slack.bot_user_id
    assert resp["bot_id"] == slack.bot_id
    assert resp["url"].startswith("https://") and resp["url"].endswith(".slack.com/")
    [call] = slack.calls_to("auth.test")
    assert call.status == 200 and call.token == slack.token
    assert call.headers["Authorization"].startswith("Bearer ")
    assert slack.token not in call.headers["Authorization"]  # recorded masked


def test_post_message_by_name_answers_with_channel_id(
    slack: SlackStandIn, client: WebClient
) -> None:
    first = client.chat_postMessage(channel="#imagepull-alerts", text="one")
    second = client.chat_postMessage(channel="imagepull-alerts", text="two")
    third = client.chat_postMessage(channel=ALERTS, text="three")
    assert {first["channel"], second["channel"], third["channel"]} == {ALERTS}
    stamps = [first["ts"], second["ts"], third["ts"]]
    for ts in stamps:
        secs, frac = ts.split(".")
        assert secs.isdigit() and len(frac) == 6 and frac.isdigit()
    assert (
        stamps == sorted(stamps, key=lambda t: tuple(map(int, t.split("."))))
        and len(set(stamps)) == 3
    )
    assert first["message"]["text"] == "one" and first["message"]["bot_id"] == slack.bot_id
    assert [m.text for m in slack.channel_history("#imagepull-alerts")] == ["one", "two", "three"]


def test_sdk_sends_json_and_blocks_arrive_as_a_list(slack: SlackStandIn, client: WebClient) -> None:
    blocks = [_section("*ImagePullBackOff* in `shop/web`")]
    client.chat_postMessage(channel=ALERTS, text="fallback", blocks=blocks, unfurl_links=False)
    [call] = slack.calls_to("chat.postMessage")
    assert call.headers["Content-Type"].startswith("application/json")
    assert call.params["blocks"] == blocks
    assert call.params["unfurl_links"] is False
    assert slack.messages(ALERTS)[0].params["unfurl_links"] is False


def test_form_encoded_blocks_are_a_json_string(slack: SlackStandIn, client: WebClient) -> None:
    """Slack's form encoding: ``blocks`` is a URL-encoded JSON string; token as a field."""
    blocks = [_section("from a form")]
    resp = client.api_call(
        "chat.postMessage",
        data={"channel": ALERTS, "text": "x", "blocks": json.dumps(blocks)},
    )
    assert resp["ok"]
    [call] = slack.calls_to("chat.postMessage")
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.params["blocks"] == blocks


def test_token_as_form_field(slack: SlackStandIn) -> None:
    anonymous = WebClient(base_url=slack.api_url, retry_handlers=[])
    assert anonymous.auth_test(token=slack.token)["ok"]
    assert slack.calls_to("auth.test")[0].token == slack.token


def test_thread_replies_and_broadcast(slack: SlackStandIn, client: WebClient) -> None:
    root = client.chat_postMessage(channel=ALERTS, text="root")
    r1 = client.chat_postMessage(channel=ALERTS, text="reply 1", thread_ts=root["ts"])
    client.chat_postMessage(
        channel=ALERTS, text="reply 2", thread_ts=root["ts"], reply_broadcast=True
    )
    assert r1["message"]["thread_ts"] == root["ts"]
    [top, broadcast] = slack.channel_history(ALERTS)
    assert top.text == "root" and [r.text for r in top.replies] == ["reply 1", "reply 2"]
    assert broadcast.reply_broadcast and broadcast.thread_ts == root["ts"]


def test_reply_to_unknown_thread_is_accepted_but_flagged(
    slack: SlackStandIn, client: WebClient
) -> None:
    resp = client.chat_postMessage(channel=ALERTS, text="lost", thread_ts="1500000000.000100")
    assert resp["ok"]
    [msg] = slack.messages(ALERTS)
    assert msg.unknown_thread and msg.thread_ts == "1500000000.000100"


def test_update_keeps_history_and_unknown_ts_fails(slack: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=ALERTS, text="v1", blocks=[_section("v1")])
    updated = client.chat_update(
        channel=ALERTS, ts=posted["ts"], text="v2", blocks=[_section("v2")]
    )
    assert updated["ts"] == posted["ts"] and updated["message"]["text"] == "v2"
    client.chat_update(channel=ALERTS, ts=posted["ts"], text="v3")  # blocks retained
    [msg] = slack.channel_history(ALERTS)
    assert msg.text == "v3" and msg.blocks == [_section("v2")]
    assert [e.text for e in msg.edits] == ["v2", "v3"] and msg.original is not None
    assert msg.original.text == "v1"

    err = _api_error(lambda: client.chat_update(channel=ALERTS, ts="1.000001", text="x"))
    assert err.response["error"] == "message_not_found"
    assert err.response.status_code == 200


def test_ephemeral_views_and_usergroups(slack: SlackStandIn, client: WebClient) -> None:
    eph = client.chat_postEphemeral(channel=ALERTS, user="U0ONCALL1", text="only you")
    assert eph["ok"] and "." in eph["message_ts"]
    assert slack.ephemerals[0].user == "U0ONCALL1"

    view = {
        "type": "modal",
        "callback_id": "silence",
        "title": {"type": "plain_text", "text": "Silence"},
        "blocks": [_section("How long?")],
    }
    opened = client.views_open(trigger_id="12345.98765.abcd", view=view)
    assert opened["view"]["id"].startswith("V") and opened["view"]["callback_id"] == "silence"
    assert slack.views[0]["trigger_id"] == "12345.98765.abcd"

    slack.add_usergroup("S0ONCALL", ["U0ONCALL1", "U0ONCALL2"])
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == [
        "U0ONCALL1",
        "U0ONCALL2",
    ]
    err = _api_error(lambda: client.usergroups_users_list(usergroup="S0NOPE"))
    assert err.response["error"] == "no_such_subteam"


def test_conversations_info_and_added_channels(slack: SlackStandIn, client: WebClient) -> None:
    slack.add_channel("prod-oncall", "C0PRODONC1")
    info = client.conversations_info(channel="C0PRODONC1")
    assert info["channel"]["name"] == "prod-oncall" and info["channel"]["is_member"]
    assert client.chat_postMessage(channel="#prod-oncall", text="x")["channel"] == "C0PRODONC1"
    err = _api_error(lambda: client.conversations_info(channel="C0MISSING"))
    assert err.response["error"] == "channel_not_found"


def test_two_standins_do_not_share_state() -> None:
    with SlackStandIn() as a, SlackStandIn(token="xoxb-other") as b:
        WebClient(token=a.token, base_url=a.api_url).chat_postMessage(channel=ALERTS, text="a")
        assert a.messages(ALERTS) and not b.messages(ALERTS) and not b.calls


# -- errors Slack returns with HTTP 200 --------------------------------------------------------
@pytest.mark.parametrize(("token", "error"), [(None, "not_authed"), ("xoxb-wrong", "invalid_auth")])
def test_auth_errors(slack: SlackStandIn, token: str | None, error: str) -> None:
    bad = WebClient(token=token, base_url=slack.api_url, retry_handlers=[])
    err = _api_error(lambda: bad.chat_postMessage(channel=ALERTS, text="x"))
    assert err.response.status_code == 200 and err.response["error"] == error
    assert not slack.messages(ALERTS)


def test_unknown_method_and_channel(slack: SlackStandIn, client: WebClient) -> None:
    assert _api_error(lambda: client.api_call("chat.frobnicate")).response["error"] == (
        "unknown_method"
    )
    err = _api_error(lambda: client.chat_postMessage(channel="#nowhere", text="x"))
    assert err.response["error"] == "channel_not_found"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"blocks": [_section(f"block {i}") for i in range(51)]}, "invalid_blocks"),
        ({"blocks": [_section("x" * 3001)]}, "invalid_blocks"),
        (
            {"blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "y" * 3001}]}]},
            "invalid_blocks",
        ),
        ({"text": "z" * 40_001}, "msg_too_long"),
        ({}, "no_text"),
    ],
    ids=["51-blocks", "section-3001", "context-3001", "text-40001", "nothing"],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_validation_errors(
    slack: SlackStandIn, client: WebClient, kwargs: dict[str, Any], error: str
) -> None:
    kwargs.setdefault("text", "fallback" if "blocks" in kwargs else None)
    err = _api_error(lambda: client.chat_postMessage(channel=ALERTS, **kwargs))
    assert err.response.status_code == 200 and err.response["error"] == error
    assert not slack.messages(ALERTS)
    if error == "invalid_blocks":
        assert err.response["response_metadata"]["messages"][0].startswith("[ERROR] ")


def test_limits_are_inclusive(slack: SlackStandIn, client: WebClient) -> None:
    blocks = [_section("x" * 3000)] + [_section(str(i)) for i in range(49)]
    assert client.chat_postMessage(channel=ALERTS, text="t" * 40_000, blocks=blocks)["ok"]


# -- failure injection -------------------------------------------------------------------------
def test_rate_limit_retry_after_honoured_by_sdk_handler(slack: SlackStandIn) -> None:
    client = WebClient(
        token=slack.token,
        base_url=slack.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    start = time.monotonic()
    resp = client.chat_postMessage(channel=ALERTS, text="after the limit")
    elapsed = time.monotonic() - start
    assert resp["ok"]
    assert 1.0 <= elapsed < 3.0
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]
    assert len(slack.messages(ALERTS)) == 1


def test_rate_limit_without_handler_raises_with_retry_after(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    err = _api_error(lambda: client.chat_postMessage(channel=ALERTS, text="x"))
    assert err.response.status_code == 429
    assert err.response["error"] == "ratelimited"
    assert err.response.headers["Retry-After"] == "7"
    assert not slack.messages(ALERTS)
    assert client.chat_postMessage(channel=ALERTS, text="x")["ok"]  # only the next one failed


def test_server_errors_retried_by_sdk_handler(slack: SlackStandIn) -> None:
    client = WebClient(
        token=slack.token,
        base_url=slack.api_url,
        retry_handlers=[
            ServerErrorRetryHandler(
                max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.05)
            )
        ],
    )
    slack.fail_next("chat.postMessage", status=500, count=2)
    assert client.chat_postMessage(channel=ALERTS, text="third time lucky")["ok"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 500, 200]
    assert len(slack.messages(ALERTS)) == 1


def test_server_error_without_handler(slack: SlackStandIn, client: WebClient) -> None:
    slack.fail_next("*", status=503)
    err = _api_error(lambda: client.auth_test())
    assert err.response.status_code == 503


def test_channel_rate_limit_burst(slack: SlackStandIn, client: WebClient) -> None:
    slack.enforce_channel_rate(per_second=1)
    assert client.chat_postMessage(channel=ALERTS, text="1")["ok"]
    err = _api_error(lambda: client.chat_postMessage(channel=ALERTS, text="2"))
    assert err.response.status_code == 429 and int(err.response.headers["Retry-After"]) >= 1
    slack.add_channel("other", "C0OTHER001")  # the limit is per channel
    assert client.chat_postMessage(channel="C0OTHER001", text="elsewhere")["ok"]
    assert len(slack.messages(ALERTS)) == 1


def test_latency(slack: SlackStandIn, client: WebClient) -> None:
    slack.set_latency("auth.test", 0.3)
    start = time.monotonic()
    client.auth_test()
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    client.chat_postMessage(channel=ALERTS, text="fast")
    assert time.monotonic() - start < 0.3


def test_down_and_up(slack: SlackStandIn, client: WebClient) -> None:
    slack.down()
    assert _api_error(lambda: client.auth_test()).response.status_code == 503
    slack.down(refuse=True)
    with pytest.raises(URLError):
        client.auth_test()
    slack.up()
    assert client.auth_test()["ok"]


def _auth_test(conn: http.client.HTTPConnection, token: str) -> http.client.HTTPResponse:
    conn.request("POST", "/api/auth.test", body=b"",
                 headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    resp.read()
    return resp


def _refused(slack: SlackStandIn) -> bool:
    try:
        socket.create_connection((slack.host, slack.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_refuse_cuts_keep_alive_connections_and_up_serves_the_same_port(
    slack: SlackStandIn,
) -> None:
    """A client's pooled keep-alive connection is cut by ``down(refuse=True)``: were it still
    answered, an outage test against Slack would test nothing."""
    port = slack.port
    conn = http.client.HTTPConnection(slack.host, port, timeout=5)
    try:
        resp = _auth_test(conn, slack.token)
        assert resp.status == 200 and not resp.will_close  # kept alive for the next request
        slack.down(refuse=True)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            _auth_test(conn, slack.token)  # same connection: cut, not served
    finally:
        conn.close()
    assert _refused(slack) and slack.port == port  # refused, the port still reserved
    with pytest.raises(OSError):  # nobody else can take the port meanwhile
        socket.create_server((slack.host, port))
    slack.up()
    assert slack.port == port
    fresh = http.client.HTTPConnection(slack.host, port, timeout=5)
    try:
        assert _auth_test(fresh, slack.token).status == 200
    finally:
        fresh.close()


def test_stop_cuts_keep_alive_connections(slack: SlackStandIn) -> None:
    conn = http.client.HTTPConnection(slack.host, slack.port, timeout=5)
    try:
        assert _auth_test(conn, slack.token).status == 200
        slack.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            _auth_test(conn, slack.token)
    finally:
        conn.close()
    assert _refused(slack)


# -- response_url ------------------------------------------------------------------------------
def test_response_url_via_webhook_client(slack: SlackStandIn) -> None:
    url = slack.response_url("cmd-1")
    resp = WebhookClient(url).send(
        text="diagnosing…", response_type="ephemeral", replace_original=False
    )
    assert resp.status_code == 200 and resp.body == "ok"
    [post] = slack.responses("cmd-1")
    assert post.body["text"] == "diagnosing…" and post.response_type == "ephemeral"
    assert slack.calls_to("response_url")[0].params["response_url"] == "cmd-1"


def test_response_url_errors(slack: SlackStandIn) -> None:
    url = slack.response_url("once", max_uses=1)
    hook = WebhookClient(url)
    assert hook.send(text="first").status_code == 200
    used = hook.send(text="second")
    assert used.status_code == 404 and used.body == "used_url"
    empty = WebhookClient(slack.response_url("empty"))
    bad = empty.send_dict({"response_type": "ephemeral"})
    assert bad.status_code == 400 and bad.body == "no_text"
    null = empty.send_dict({})  # the SDK sends ``null`` for an empty dict
    assert null.status_code == 400 and null.body == "invalid_payload"


def test_response_url_in_channel_shows_in_transcript(slack: SlackStandIn) -> None:
    url = slack.response_url("cmd-2", channel=ALERTS, user="U0ONCALL1")
    WebhookClient(url).send(text="for everyone", response_type="in_channel")
    WebhookClient(url).send(text="just for you")
    transcript = slack.render_transcript(ALERTS)
    assert "for everyone" in transcript
    assert "(only visible to U0ONCALL1)" in transcript and "just for you" in transcript


def test_an_apps_ack_shows_where_its_response_url_would_without_using_it(
        slack: SlackStandIn) -> None:
    """A slash command's HTTP answer (bot/sim/delivery.py hands it over): Slack shows it to
    the person; it is not a post to the response_url, which keeps its five uses."""
    url = slack.response_url("cmd-3", channel=ALERTS, user="U0ONCALL1", max_uses=1)
    slack.app_answered("cmd-3", {"text": "➡️ Sent to `prod-us`'s agent"})
    assert slack.responses("cmd-3") == []
    assert WebhookClient(url).send(text="the answer").status_code == 200
    transcript = slack.render_transcript(ALERTS)
    assert transcript.index("Sent to `prod-us`") < transcript.index("the answer")
    assert transcript.count("(only visible to U0ONCALL1)") == 2
    assert slack.channel_name(ALERTS) == "imagepull-alerts"


# -- for humans --------------------------------------------------------------------------------
def test_transcript_shows_current_state_and_threads(
    slack: SlackStandIn, client: WebClient, tmp_path: Path
) -> None:
    root = client.chat_postMessage(
        channel=ALERTS,
        text="web cannot pull",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "ImagePullBackOff"}},
            _section("Tag `lates` does not exist"),
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Pod*\nshop/web-7d9f8b6c5d-x2x9q"},
                    {"type": "mrkdwn", "text": "*Cause*\ntag_not_found"},
                ],
            },
            _section("```kubectl set image deployment/web web=nginx:latest -n shop```"),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "cluster prod"}]},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Fix it"}},
                    {"type": "button", "text": {"type": "plain_text", "text": "Silence 1h"}},
                ],
            },
        ],
    )
    client.chat_postMessage(channel=ALERTS, text="pulled 7 times", thread_ts=root["ts"])
    client.chat_update(
        channel=ALERTS,
        ts=root["ts"],
        text="resolved",
        blocks=[_section(":white_check_mark: *Resolved*: web pulls nginx:latest")],
    )
    client.chat_postMessage(channel=ALERTS, text="second alert")

    transcript = slack.render_transcript()
    lines = transcript.splitlines()
    assert lines[0] == f"#imagepull-alerts ({ALERTS})"
    assert "(edited)" in lines[1]
    assert lines[2].strip() == ":white_check_mark: *Resolved*: web pulls nginx:latest"
    reply = next(i for i, line in enumerate(lines) if "↳" in line)
    assert lines[reply + 1].strip() == "pulled 7 times"
    assert len(lines[reply]) - len(lines[reply].lstrip()) > len(lines[1]) - len(lines[1].lstrip())
    assert transcript.index("pulled 7 times") < transcript.index("second alert")
    assert "ImagePullBackOff" not in transcript  # the old version is gone, as in Slack

    # the original rendering, before the edit, is in the saved revisions
    saved = json.loads(slack.save_blocks(tmp_path / "blocks.json").read_text())
    [channel] = [c for c in saved["channels"] if c["id"] == ALERTS]
    first = channel["messages"][0]
    assert first["edited"] and first["revisions"][0]["blocks"][0]["type"] == "header"
    assert first["replies"][0]["text"] == "pulled 7 times"


def test_render_blocks_for_people() -> None:
    from bot.sim.slack import render_blocks

    text = render_blocks(
        [
            {"type": "header", "text": {"type": "plain_text", "text": "Pull failed"}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "fix:\n```\nkubectl rollout restart\n```"},
                "fields": [{"type": "mrkdwn", "text": "*Node*\nnode-1"}],
                "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Run"}},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "a"}, {"type": "mrkdwn", "text": "b"}],
            },
            {"type": "divider"},
        ]
    )
    assert text.splitlines() == [
        "*Pull failed*",
        "fix:",
        "```",
        "kubectl rollout restart",
        "```",
        "*Node*",
        "node-1",
        "[Run]",
        "a  ·  b",
        "────────",
    ]


def test_raw_http_shapes(slack: SlackStandIn) -> None:
    """What the SDK hides: 429 body and header exactly as Slack sends them."""
    slack.fail_next("auth.test", status=429, retry_after=2)
    req = urllib.request.Request(
        slack.api_url + "auth.test",
        data=b"",
        headers={"Authorization": f"Bearer {slack.token}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 429 and info.value.headers["Retry-After"] == "2"
    assert json.loads(info.value.read()) == {"ok": False, "error": "ratelimited"}
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers.get_content_type() == "application/json"
        assert json.loads(resp.read())["ok"] is True


def test_async_client_get_and_json(slack: SlackStandIn) -> None:
    """``AsyncWebClient`` (aiohttp, used by ``AsyncApp``) sends GET query strings for read
    methods; the stand-in takes those as well as POST bodies."""
    import asyncio

    from slack_sdk.web.async_client import AsyncWebClient

    slack.add_usergroup("S0ONCALL", ["U0ONCALL1"])

    async def run() -> tuple[Any, Any]:
        client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
        users = await client.usergroups_users_list(usergroup="S0ONCALL")
        posted = await client.chat_postMessage(channel=ALERTS, text="async")
        return users, posted

    users, posted = asyncio.run(run())
    assert users["users"] == ["U0ONCALL1"] and posted["channel"] == ALERTS
    [call] = slack.calls_to("usergroups.users.list")
    assert call.verb == "GET" and call.params["usergroup"] == "S0ONCALL"
    assert slack.calls_to("chat.postMessage")[0].verb == "POST"


def test_response_url_rate_limited(slack: SlackStandIn) -> None:
    slack.fail_next("response_url", status=429, retry_after=3)
    resp = WebhookClient(slack.response_url("busy")).send(text="x")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert not slack.responses("busy")


# -- reading history (the bot looks for a post whose answer it never got) ----------------------
META = {"event_type": "imagepull_incident", "event_payload": {"incident_id": "inc-1",
                                                              "part": "root"}}


def test_post_message_stores_metadata_returned_only_when_asked(
        slack: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=ALERTS, text="root", metadata=META)
    client.chat_postMessage(channel=ALERTS, text="plain")
    [stored, _] = slack.messages(ALERTS)
    assert stored.metadata == META
    plain = client.conversations_history(channel=ALERTS)["messages"]
    assert [m["text"] for m in plain] == ["plain", "root"]  # newest first
    assert all("metadata" not in m for m in plain)
    full = client.conversations_history(channel=ALERTS, include_all_metadata=True)["messages"]
    assert full[1]["metadata"] == META and full[1]["ts"] == posted["ts"]
    assert "metadata" not in full[0]
    bad = _api_error(lambda: client.chat_postMessage(channel=ALERTS, text="x",
                                                     metadata={"event_type": "x"}))
    assert bad.response["error"] == "invalid_metadata_format"


def test_history_window_and_cursor_pagination(slack: SlackStandIn, client: WebClient) -> None:
    ts = [client.chat_postMessage(channel=ALERTS, text=f"m{i}")["ts"] for i in range(5)]
    client.chat_postMessage(channel=ALERTS, text="reply", thread_ts=ts[0])  # not in history
    after = client.conversations_history(channel=ALERTS, oldest=ts[1])
    assert [m["text"] for m in after["messages"]] == ["m4", "m3", "m2"]  # oldest exclusive
    inclusive = client.conversations_history(channel=ALERTS, oldest=ts[1], latest=ts[3],
                                             inclusive=True)
    assert [m["text"] for m in inclusive["messages"]] == ["m3", "m2", "m1"]
    seen, cursor, pages = [], None, 0
    while True:
        page = client.conversations_history(channel=ALERTS, limit=2, cursor=cursor)
        pages += 1
        seen += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert seen == ["m4", "m3", "m2", "m1", "m0"] and pages == 3
    parent = client.conversations_history(channel=ALERTS, oldest=ts[0], inclusive=True,
                                          latest=ts[0])["messages"][0]
    assert parent["reply_count"] == 1 and parent["thread_ts"] == ts[0]
    assert _api_error(lambda: client.conversations_history(
        channel="C0NOPE")).response["error"] == "channel_not_found"
    assert _api_error(lambda: client.conversations_history(
        channel=ALERTS, cursor="bm9wZQ==")).response["error"] == "invalid_cursor"


def test_replies_oldest_first_with_parent_and_metadata(slack: SlackStandIn,
                                                       client: WebClient) -> None:
    root = client.chat_postMessage(channel=ALERTS, text="root")["ts"]
    replies = [client.chat_postMessage(channel=ALERTS, text=f"r{i}", thread_ts=root,
                                       metadata={**META, "event_payload": {"part": f"u{i}"}})
               ["ts"] for i in range(3)]
    thread = client.conversations_replies(channel=ALERTS, ts=root, include_all_metadata=True)
    assert [m["text"] for m in thread["messages"]] == ["root", "r0", "r1", "r2"]
    assert [m.get("metadata", {}).get("event_payload") for m in thread["messages"][1:]] == [
        {"part": "u0"}, {"part": "u1"}, {"part": "u2"}]
    assert all(m["thread_ts"] == root for m in thread["messages"])
    by_reply = client.conversations_replies(channel=ALERTS, ts=replies[1], oldest=replies[0])
    assert [m["text"] for m in by_reply["messages"]] == ["r1", "r2"]
    assert "metadata" not in by_reply["messages"][0]
    first = client.conversations_replies(channel=ALERTS, ts=root, limit=3)
    assert len(first["messages"]) == 3 and first["has_more"]
    rest = client.conversations_replies(channel=ALERTS, ts=root, limit=3,
                                        cursor=first["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["r2"] and not rest["has_more"]
    assert _api_error(lambda: client.conversations_replies(
        channel=ALERTS, ts="1.000001")).response["error"] == "thread_not_found"
    assert _api_error(lambda: client.conversations_replies(
        channel="C0NOPE", ts=root)).response["error"] == "channel_not_found"


def test_failure_with_effect_stores_the_message_then_fails(slack: SlackStandIn,
                                                          client: WebClient) -> None:
    slack.fail_next("chat.postMessage", status=503, effect=True)
    error = _api_error(lambda: client.chat_postMessage(channel=ALERTS, text="hi"))
    assert error.response.status_code == 503
    assert [m.text for m in slack.channel_history(ALERTS)] == ["hi"]  # stored all the same


def test_conversations_list_finds_a_channel_id_by_name(slack: SlackStandIn,
                                                       client: WebClient) -> None:
    slack.add_channel("secret-ops", "G0PRIVATE1")
    public = client.conversations_list()["channels"]
    assert [(c["id"], c["name"]) for c in public] == [(ALERTS, "imagepull-alerts")]
    both = client.conversations_list(types="public_channel,private_channel", limit=1)
    rest = client.conversations_list(types="public_channel,private_channel", limit=1,
                                     cursor=both["response_metadata"]["next_cursor"])
    assert [c["name"] for c in both["channels"] + rest["channels"]] == [
        "imagepull-alerts", "secret-ops"]
    assert rest["channels"][0]["is_private"] and not rest["response_metadata"]["next_cursor"]
