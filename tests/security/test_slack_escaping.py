"""Hostile values in every field reach Slack as text, never as live markup (issue 8, defect 1).

The whole bot runs as `serve` runs it (tests/support/slack_requests.running_bot): scenario
cluster → watch → diagnosis → incidents (real Redis) → Block Kit → real slack_sdk → the Slack
stand-in, and /imagepull, buttons and approvals through the signed HTTP endpoint. The cluster
holds pods whose image, kubelet event text, container name and pull secret name carry Slack
markup: channel-wide mentions, user and channel mentions, disguised links,
backticks (an odd number, so a naive code span breaks), code fences, bold / italic / strike
and entities. Then every text the bot sent (every chat.postMessage, chat.update, response_url
post, and the slash-command acks) is walked: top-level `text`, every mrkdwn text object of
every block, field, context element and confirm dialog.

Live markup allowed: only what the bot writes on purpose from validated ids, i.e. `<!date^…>`
and mentions of the workspace's real people (the requester, the approvers).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bot.sim import factory
from tests.support.slack_requests import (
    ALERTS,
    BOT_USER_ID,
    BotUnderTest,
    app_mention_event,
    block_action,
    message_ts,
    running_bot,
    slash_command,
)
from tests.support.stubs import DockerHubStub
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.timeout(120)]

ALICE = "U0ALICE001"
CAROL = "U0CAROL001"  # the approver
ONCALL_GROUP = "S0ONCALL01"

#: The attack from the issue, plus every other kind of markup Slack parses. Seven backticks:
#: an odd count, so it cannot happen to pair up with itself.
HOSTILE = ("` <!channel> *URGENT* <https://evil.example/sso|Re-authenticate here> ` <!here> "
           "<!everyone> <@U123> <#C123> <mailto:a@evil.example|mail> ```x``` _it_ ~s~ "
           "&amp; & <!subteam^S123>")
#: For fields the scenario cluster keys by name (no `/` or spaces; still markup).
HOSTILE_NAME = "<!channel>*x*`y<@U123>&z<#C123>"

#: A Docker Hub user name read from a pull secret (secret data is the cluster's, not ours).
HOSTILE_USER = "<!channel>`robot*"
HOSTILE_USER_PASSWORD = "hostile-hub-pass-do-not-print"
WEB_IMAGE = "registry.internal/shop/web:v2"
API_IMAGE = "registry.internal/shop/api:1.0"

_OWN_MARKUP = re.compile(
    r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]*>"
    rf"|<@(?:{ALICE}|{CAROL})>|<!subteam\^{ONCALL_GROUP}>")
_ENTITY = re.compile(r"&(?:amp|lt|gt);")
_FENCED = re.compile(r"```.*?```", re.DOTALL)


# -- what counts as Slack-visible text ----------------------------------------------------------
def text_objects(value: Any, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(type, text) of every text object inside blocks (any depth: fields, elements,
    accessories, confirm dialogs)."""
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text") and isinstance(value.get("text"), str):
            out.append((str(value["type"]), value["text"]))
        for item in value.values():
            text_objects(item, out)
    elif isinstance(value, list):
        for item in value:
            text_objects(item, out)
    return out


def visible_texts(bot: BotUnderTest) -> list[tuple[str, str, str]]:
    """(where, type, text) for everything the bot sent that Slack would render."""
    found: list[tuple[str, str, str]] = []
    for call in bot.slack.calls:
        if call.method not in ("chat.postMessage", "chat.update", "chat.postEphemeral",
                               "response_url"):
            continue
        params = call.params
        if isinstance(params.get("text"), str):
            found.append((call.method, "mrkdwn", params["text"]))  # the fallback is mrkdwn
        found += [(call.method, kind, text)
                  for kind, text in text_objects(params.get("blocks") or [], [])]
    return found


def markup_problems(text: str) -> list[str]:
    """Why `text` (mrkdwn) is not inert: live markup other than the bot's own, a stray `&`,
    unbalanced code fences or spans."""
    problems = []
    rest = _OWN_MARKUP.sub("", text)
    for token in ("<!", "<@", "<#", "<http", "<mailto", "<"):
        if token in rest:
            problems.append(f"live {token!r}")
            break
    if ">" in rest:
        problems.append("raw '>'")
    if "&" in _ENTITY.sub("", rest):
        problems.append("unescaped '&'")
    if text.count("```") % 2:
        problems.append("unbalanced ```")
    elif _FENCED.sub("", text).count("`") % 2:
        problems.append("unbalanced `")
    return problems


def assert_inert(texts: list[tuple[str, str, str]]) -> None:
    bad = [(where, problems, text) for where, kind, text in texts if kind == "mrkdwn"
           for problems in [markup_problems(text)] if problems]
    assert not bad, "\n\n".join(f"{w}: {p}\n{t}" for w, p, t in bad[:5])


# -- driving the bot ----------------------------------------------------------------------------
def command(bot: BotUnderTest, text: str, user: str = ALICE) -> tuple[str, str]:
    """Run /imagepull; returns (the ack's text, the response_url name)."""
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    reply = bot.client.form(slash_command(text, user_id=user,
                                          response_url=bot.slack.response_url(name)))
    assert reply.status == 200, reply.text
    try:  # Bolt answers ack(text=...) as text/plain, ack(blocks=...) as JSON
        ack = str(reply.json().get("text", ""))
    except ValueError:
        ack = reply.text
    return ack, name


def answered(bot: BotUnderTest, name: str) -> dict[str, Any]:
    return dict(wait_for(lambda: bot.slack.responses(name), 20, f"the answer to {name}")[0].body)


def click(bot: BotUnderTest, action_id: str, message: Any, user: str = ALICE) -> str:
    value = next(str(e["value"]) for b in message.blocks for e in b.get("elements", [])
                 if e.get("action_id") == action_id)
    name = f"click-{uuid.uuid4().hex[:6]}"
    payload = {"ts": message.ts, "type": "message", "text": message.text,
               "blocks": message.blocks, "user": BOT_USER_ID}
    if message.thread_ts:
        payload["thread_ts"] = message.thread_ts
    reply = bot.client.form(block_action(action_id, value, message=payload, user_id=user,
                                         response_url=bot.slack.response_url(name),
                                         channel_id=message.channel))
    assert reply.status == 200, reply.text
    return name


def roots(bot: BotUnderTest) -> list[Any]:
    return bot.slack.channel_history(ALERTS[0])


def root_with(bot: BotUnderTest, needle: str) -> Any:
    return wait_for(lambda: next((m for m in roots(bot) if needle in str(m.blocks)), None),
                    20, f"the alert mentioning {needle}")


def hostile_cluster() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    # The image and the runtime's error text (the kubelet event and the pod status quote both).
    bad_image = f"{WEB_IMAGE} {HOSTILE}"
    objects += factory.failing_deployment(
        "shop", "web", bad_image,
        factory.containerd_error("not_found", WEB_IMAGE) + " " + HOSTILE)
    # A container name and a pull secret name (missing: the fix names it).
    objects += factory.failing_deployment(
        "shop", "api", API_IMAGE, factory.containerd_error("unauthorized", API_IMAGE),
        container=HOSTILE_NAME, pull_secrets=[HOSTILE_NAME])
    # A registry-wide outage (the affected-workloads list, updates as it grows). Workload
    # names cannot carry markup here: the API server (and the scenario cluster's URL routing)
    # only know DNS-1123 names, so the list is exercised with ordinary ones.
    image = "docker.io/library/redis:1"
    objects += factory.failing_deployment("shop", "cache", image,
                                          factory.containerd_error("rate_limited", image))
    return objects


def hub_secret() -> dict[str, Any]:
    auth = base64.b64encode(f"{HOSTILE_USER}:{HOSTILE_USER_PASSWORD}".encode()).decode()
    config = {"auths": {"https://index.docker.io/v1/": {
        "username": HOSTILE_USER, "password": HOSTILE_USER_PASSWORD, "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "hubcred", "namespace": "shop"},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


@pytest.fixture
def bot() -> Iterator[BotUnderTest]:
    with DockerHubStub(users={HOSTILE_USER: HOSTILE_USER_PASSWORD}) as hub, running_bot(env={
            "APPROVERS": f"{CAROL},{ONCALL_GROUP}", "DOCKERHUB_AUTH_URL": f"{hub.url}/token",
            "DOCKERHUB_REGISTRY_URL": hub.url}) as running:
        running.slack.add_usergroup(ONCALL_GROUP, [CAROL])
        for obj in [*hostile_cluster(), hub_secret()]:
            running.sim.apply(obj)
        yield running


def test_hostile_values_never_become_live_markup(bot: BotUnderTest) -> None:
    acks: list[str] = []
    web = root_with(bot, "web:v2")
    api = root_with(bot, "Registry credentials")
    root_with(bot, "Affected workloads")
    web_pod = factory.pod_names("shop", "web", f"{WEB_IMAGE} {HOSTILE}")[0]
    ack, name = command(bot, f"diagnose shop/{web_pod}")  # the hostile image, on demand
    acks.append(ack)
    assert "&lt;!channel&gt;" in str(answered(bot, name)["blocks"])

    # A registry-wide incident grows (thread update + root refresh) ...
    image = "docker.io/library/busybox:1"
    for obj in factory.failing_deployment("shop", "late", image,
                                          factory.containerd_error("rate_limited", image)):
        bot.sim.apply(obj)
    wait_for(lambda: any("more failing" in str(c.params.get("text"))
                         for c in bot.slack.calls_to("chat.postMessage")), 20, "an update")
    # ... and the hostile web pod recovers (resolved reply + resolved root).
    pod, events = factory.recovered(bot.sim.get("Pod", web_pod, "shop"))
    for obj in [pod, *events]:
        bot.sim.apply(obj)
    wait_for(lambda: any("Resolved" in str(c.params.get("text"))
                         for c in bot.slack.calls_to("chat.update")), 30, "the resolved root")

    # /imagepull: a diagnosis of the hostile pod, a verify-secret naming the hostile secret,
    # hostile text in the command itself (echoed in the ack's error), a rollout restart
    # through approval, and the alert buttons.
    api_pod = factory.pod_names("shop", "api", API_IMAGE)[0]
    for text in (f"diagnose shop/{api_pod}", f"verify-secret shop/{api_pod}",
                 "restart shop/deployment/api", "quota --secret shop/hubcred"):
        ack, name = command(bot, text)
        acks.append(ack)
        answered(bot, name)
    for text in (HOSTILE, f"diagnose {HOSTILE}", f"restart shop/{HOSTILE_NAME}/x",
                 f"verify-secret shop/x --image '{HOSTILE}'"):
        ack, _name = command(bot, text)
        acks.append(ack)
    answered(bot, click(bot, "ipb_verify_secret", api))
    answered(bot, click(bot, "ipb_rollout_restart", api))
    request = wait_for(lambda: next((m for r in roots(bot) for m in [r, *r.replies]
                                     if "Approval needed" in m.text), None), 20, "approval")
    answered(bot, click(bot, "ipb_approve", request, user=ALICE))  # not an approver
    answered(bot, click(bot, "ipb_approve", request, user=CAROL))
    wait_for(lambda: any("approved the" in str(c.params.get("text"))
                         for c in bot.slack.calls_to("chat.postMessage")), 20, "audit line")
    ts = message_ts()
    bot.client.event(app_mention_event(f"<@{BOT_USER_ID}> {HOSTILE}", ts=ts))
    wait_for(lambda: any(c.params.get("thread_ts") == ts
                         for c in bot.slack.calls_to("chat.postMessage")), 10, "the mention")

    texts = visible_texts(bot) + [("ack", "mrkdwn", a) for a in acks if a]
    methods = {where for where, _, _ in texts}
    assert {"chat.postMessage", "chat.update", "response_url", "ack"} <= methods, methods
    assert len(texts) > 100, len(texts)
    assert_inert(texts)
    # The attack is shown (escaped), not dropped: the alert reads as the pod says.
    assert "&lt;!channel&gt; *URGENT* &lt;https://evil.example/sso|Re-authenticate here&gt;" \
        in str(web.blocks)
    # The bot's own live markup survived: dates, the approver and requester mentions.
    joined = "\n".join(t for _, _, t in texts)
    assert "<!date^" in joined and f"<@{CAROL}>" in joined and f"<@{ALICE}>" in joined


@pytest.mark.parametrize("text", [
    "` <!channel> *URGENT* <https://evil.example/sso|Re-authenticate here> `",
    "<@U123> <#C123> <!here|here> &lt;!channel&gt; ```",
    "<!date^1^{date}|fake date>",
])
def test_markup_check_catches_what_it_must(text: str) -> None:
    """The checker above is not a no-op: raw hostile text fails it."""
    assert markup_problems(text)
