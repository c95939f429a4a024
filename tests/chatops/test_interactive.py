"""/imagepull and the buttons through the bot's real HTTP endpoint, signed as Slack signs.

The bot runs as `serve` runs it (tests/support/slack_requests.running_bot) against the scenario
cluster, the Slack stand-in and real Redis. PATCHes are counted at the scenario cluster, so
"nothing was patched" and "exactly one PATCH" are facts, not assumptions.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bot.sim import factory
from bot.sim.registry import SimRegistry
from tests.support.slack_requests import (
    ALERTS,
    BotUnderTest,
    block_action,
    button_value,
    pressed_message,
    running_bot,
    slash_command,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ALICE = "U0ALICE001"  # anyone in the workspace
CAROL = "U0CAROL001"  # an approver by user ID
DAVE = "U0DAVE0001"  # an approver through the on-call user group
ONCALL_GROUP = "S0ONCALL01"
ACK_DEADLINE = 3.0
WEB_IMAGE = "registry.internal/shop/web:v2.2"




@pytest.fixture
def registry() -> Iterator[SimRegistry]:
    with SimRegistry("registry.internal", {"shop/web": ["v2.1", "v2.0"]}) as reg:
        yield reg


def start(registry: SimRegistry, **env: str) -> Any:
    return running_bot(env={
        "APPROVERS": f"{CAROL},{ONCALL_GROUP}", "REGISTRY_PROBE": "true",
        "REGISTRY_ENDPOINTS": f"registry.internal={registry.url}",
        "REGISTRY_INSECURE_HOSTS": "registry.internal", **env})


@pytest.fixture
def bot(registry: SimRegistry) -> Iterator[BotUnderTest]:
    with start(registry) as running:
        running.slack.add_usergroup(ONCALL_GROUP, [DAVE])
        yield running


def failing_web(bot: BotUnderTest) -> str:
    """A Deployment whose tag was never pushed; returns its pod name."""
    for obj in factory.failing_deployment("shop", "web", WEB_IMAGE,
                                          factory.containerd_error("not_found", WEB_IMAGE)):
        bot.sim.apply(obj)
    return factory.pod_names("shop", "web", WEB_IMAGE)[0]


def command(bot: BotUnderTest, text: str, user: str = ALICE,
            channel: str = ALERTS[0]) -> tuple[Any, str]:
    name = f"cmd-{uuid.uuid4().hex[:6]}"
    url = bot.slack.response_url(name)
    reply = bot.client.form(slash_command(text, user_id=user, channel_id=channel,
                                          response_url=url))
    return reply, name


def answer(bot: BotUnderTest, name: str, timeout: float = 15.0) -> dict[str, Any]:
    posts = wait_for(lambda: bot.slack.responses(name), timeout, f"the answer to {name}")
    return dict(posts[0].body)


def click(bot: BotUnderTest, action_id: str, value: str, message: Any,
          user: str = ALICE) -> tuple[Any, str]:
    name = f"click-{uuid.uuid4().hex[:6]}"
    url = bot.slack.response_url(name)
    payload = pressed_message(message)
    reply = bot.client.form(block_action(action_id, value, message=payload, response_url=url,
                                         user_id=user, channel_id=message.channel))
    return reply, name


def patches(bot: BotUnderTest) -> list[Any]:
    return bot.sim.requests_matching("PATCH")


def approval_message(bot: BotUnderTest) -> Any:
    def find() -> Any:
        for root in bot.slack.channel_history(ALERTS[0]):
            for message in [root, *root.replies]:
                if "Approval needed" in message.text:
                    return message
        return None

    return wait_for(find, what="the approval request message")


def alert_with(bot: BotUnderTest, action_id: str) -> Any:
    """The alert once it has the `action_id` button: a button that rests on the registry's
    answer (Set image) may come with the edit that follows the root (issue 10, Deliver 3)."""
    def find() -> Any:
        for root in bot.slack.channel_history(ALERTS[0]):
            if any(e.get("action_id") == action_id
                   for block in root.blocks for e in block.get("elements", [])):
                return root
        return None

    return wait_for(find, what=f"the alert with its {action_id} button")


# -- slash command -----------------------------------------------------------------------------


def test_help_and_malformed_input_are_answered_in_the_ack(bot: BotUnderTest) -> None:
    reply, _ = command(bot, "help")
    assert reply.status == 200 and "/imagepull diagnose NAMESPACE/POD" in reply.text
    for text, says in (("diagnose Shop/web", "DNS-1123"), ("frobnicate", "unknown sub-command"),
                       ("restart shop/pod/web-1", "cannot restart a pod")):
        reply, _name = command(bot, text)
        assert reply.status == 200 and says in reply.text, reply.text
        assert "Traceback" not in reply.text
    time.sleep(0.3)
    assert bot.slack.responses() == []  # nothing else was sent


def test_diagnose_acks_at_once_then_answers_with_the_alert_rendering(bot: BotUnderTest) -> None:
    pod = failing_web(bot)
    reply, name = command(bot, f"diagnose shop/{pod}")
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE
    body = answer(bot, name)
    blocks = str(body["blocks"])
    assert "Image tag not found" in blocks
    assert "kubectl set image deployment/web web=registry.internal/shop/web:v2.1 -n shop" \
        in blocks
    assert body["response_type"] == "ephemeral"


def test_ack_stays_under_3s_when_the_kubernetes_api_is_slow(bot: BotUnderTest) -> None:
    pod = failing_web(bot)
    bot.sim.set_latency(r"/pods/", 10.0)
    reply, name = command(bot, f"diagnose shop/{pod}")
    assert reply.status == 200
    assert reply.elapsed < ACK_DEADLINE, reply.elapsed
    assert "working on it" in reply.text
    body = answer(bot, name, timeout=30)
    assert "Image tag not found" in str(body["blocks"])


def test_diagnose_unknown_pod_says_so(bot: BotUnderTest) -> None:
    reply, name = command(bot, "diagnose shop/nope")
    assert reply.status == 200
    assert 'pod "shop/nope" not found' in answer(bot, name)["text"]


def test_verify_secret_of_a_pod(bot: BotUnderTest) -> None:
    pod = failing_web(bot)
    reply, name = command(bot, f"verify-secret shop/{pod}")
    assert reply.status == 200
    assert "uses no pull secret" in answer(bot, name)["text"]


def test_command_channels_restriction(registry: SimRegistry) -> None:
    with start(registry, COMMAND_CHANNELS="C0OPS00001") as bot:
        reply, _ = command(bot, "diagnose shop/web-1", channel=ALERTS[0])
        assert "not enabled in this channel" in reply.text
        reply, _name = command(bot, "help", channel="C0OPS00001")
        assert "/imagepull diagnose" in reply.text


# -- approvals ---------------------------------------------------------------------------------


def test_restart_needs_an_approver_and_runs_once(bot: BotUnderTest) -> None:
    failing_web(bot)
    reply, name = command(bot, "restart shop/deployment/web")
    assert reply.status == 200
    assert "Asked for approval" in answer(bot, name)["text"]
    request = approval_message(bot)
    request_id = button_value(request, "ipb_approve")

    reply, name = click(bot, "ipb_approve", request_id, request, user=ALICE)
    assert reply.status == 200
    assert "not an approver" in answer(bot, name)["text"]
    assert patches(bot) == []

    reply, name = click(bot, "ipb_approve", request_id, request, user=CAROL)
    assert "Done:" in answer(bot, name)["text"]
    [patch] = patches(bot)
    assert "kubectl.kubernetes.io/restartedAt" in str(patch.body)

    reply, name = click(bot, "ipb_approve", request_id, request, user=DAVE)  # a double click
    assert "Already approved" in answer(bot, name)["text"]
    assert len(patches(bot)) == 1
    wait_for(lambda: any("approved the rollout restart" in r.text
                         for r in approval_thread(bot, request)), what="the audit line")
    updated = wait_for(lambda: [m for m in all_messages(bot) if m.ts == request.ts and m.edited],
                       what="the approval message edited")
    assert not any(b["type"] == "actions" for b in updated[0].blocks)
    assert updated[0].text.startswith(f"✅ Approved by <@{CAROL}>")
    metrics = bot.runtime.metrics.render().decode()
    assert 'imagepull_bot_approval_decisions_total{outcome="approved"} 1.0' in metrics
    assert 'imagepull_bot_approval_decisions_total{outcome="refused_not_approver"} 1.0' in metrics


def all_messages(bot: BotUnderTest) -> list[Any]:
    return [m for root in bot.slack.channel_history(ALERTS[0]) for m in [root, *root.replies]]


def approval_thread(bot: BotUnderTest, request: Any) -> list[Any]:
    for root in bot.slack.channel_history(ALERTS[0]):
        if root.ts in (request.ts, request.thread_ts):
            return list(root.replies)
    return []


def test_two_approvers_at_once_make_exactly_one_patch(bot: BotUnderTest) -> None:
    failing_web(bot)
    command(bot, "restart shop/deployment/web")
    request = approval_message(bot)
    request_id = button_value(request, "ipb_approve")
    replies: list[Any] = []
    barrier = threading.Barrier(4)

    def approve(user: str) -> None:
        barrier.wait()
        replies.append(click(bot, "ipb_approve", request_id, request, user=user))

    threads = [threading.Thread(target=approve, args=(u,)) for u in (CAROL, DAVE, CAROL, DAVE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(reply.status == 200 for reply, _ in replies)
    texts = [answer(bot, name)["text"] for _, name in replies]
    assert sum(t.startswith("Done:") for t in texts) == 1, texts
    assert len(patches(bot)) == 1


def test_two_person_rule_refuses_the_requester(registry: SimRegistry) -> None:
    with start(registry, REQUIRE_SECOND_APPROVER="true") as bot:
        failing_web(bot)
        command(bot, "restart shop/deployment/web", user=CAROL)
        request = approval_message(bot)
        request_id = button_value(request, "ipb_approve")
        _reply, name = click(bot, "ipb_approve", request_id, request, user=CAROL)
        assert "Two-person rule" in answer(bot, name)["text"]
        assert patches(bot) == []


def test_expired_request_is_refused(registry: SimRegistry) -> None:
    with start(registry, APPROVAL_TTL_SECONDS="1") as bot:
        failing_web(bot)
        command(bot, "restart shop/deployment/web")
        request = approval_message(bot)
        time.sleep(1.2)
        _reply, name = click(bot, "ipb_approve", button_value(request, "ipb_approve"), request,
                            user=CAROL)
        assert "expired" in answer(bot, name)["text"]
        assert patches(bot) == []


def test_deny_is_recorded_and_patches_nothing(bot: BotUnderTest) -> None:
    failing_web(bot)
    command(bot, "restart shop/deployment/web")
    request = approval_message(bot)
    _reply, name = click(bot, "ipb_deny", button_value(request, "ipb_deny"), request, user=DAVE)
    assert answer(bot, name)["text"].startswith("Denied")
    wait_for(lambda: any("denied the rollout restart" in r.text
                         for r in approval_thread(bot, request)), what="the audit line")
    assert patches(bot) == []


def test_forged_approval_is_rejected_without_effect(bot: BotUnderTest) -> None:
    failing_web(bot)
    command(bot, "restart shop/deployment/web")
    request = approval_message(bot)
    payload = {"ts": request.ts, "type": "message", "blocks": request.blocks}
    body = block_action("ipb_approve", button_value(request, "ipb_approve"), message=payload,
                        response_url=bot.slack.response_url("forged"), user_id=CAROL)
    assert bot.client.form(body, secret="not-the-signing-secret").status == 401
    assert bot.client.form(body, stale=True).status == 401
    time.sleep(0.3)
    assert patches(bot) == []


# -- alert buttons -----------------------------------------------------------------------------


def test_set_image_button_on_the_alert(bot: BotUnderTest) -> None:
    failing_web(bot)
    alert = alert_with(bot, "ipb_set_image")
    value = button_value(alert, "ipb_set_image")
    assert "Set image to registry.internal/shop/web:v2.1" in str(alert.blocks)
    reply, name = click(bot, "ipb_set_image", value, alert, user=ALICE)
    assert reply.status == 200 and reply.elapsed < ACK_DEADLINE
    assert "Asked for approval of the set image" in answer(bot, name)["text"]
    request = approval_message(bot)
    assert request.thread_ts == alert.ts  # the request lives in the incident's thread
    reply, name = click(bot, "ipb_approve", button_value(request, "ipb_approve"), request,
                        user=CAROL)
    assert "Done:" in answer(bot, name)["text"]
    [patch] = patches(bot)
    assert "registry.internal/shop/web:v2.1" in str(patch.body)
    deployment = bot.sim.get("Deployment", "web", "shop")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.internal/shop/web:v2.1"


def test_set_image_button_of_an_alert_stored_by_an_earlier_version(bot: BotUnderTest) -> None:
    """An incident stored before `suggested_image` was a diagnosis key (the image was only in
    the first fix's command) still answers its Set image button after an upgrade."""
    failing_web(bot)
    alert = alert_with(bot, "ipb_set_image")
    incident_id = button_value(alert, "ipb_set_image")
    key = bot.store.key("incident", incident_id)
    # the registry's answer (`diagnosis:2`; `diagnosis` may be the kubelet's first look)
    stored = json.loads(bot.store.hgetall(key)["diagnosis:2"])
    assert stored["suggested_image"] == "registry.internal/shop/web:v2.1"
    del stored["suggested_image"]
    # as an earlier version stored it: one diagnosis, the image only in the first fix
    bot.store.hset(key, {"diagnosis": json.dumps(stored)})
    bot.store.hdel(key, "diagnosis:1", "diagnosis:2")
    reply, name = click(bot, "ipb_set_image", incident_id, alert, user=ALICE)
    assert reply.status == 200
    assert "Asked for approval of the set image" in answer(bot, name)["text"]
    assert "registry.internal/shop/web:v2.1" in approval_message(bot).text


def test_verify_secret_button_answers_in_the_thread(bot: BotUnderTest) -> None:
    """Pressed as soon as the alert shows: Slack shows it before chat.postMessage has answered
    the bot, so before the incident records where its alert is. The late answer makes that
    window wide here (it was once a rare flake under load: the answer went ephemeral)."""
    image = "registry.internal/shop/billing:4.2"
    bot.slack.set_latency("chat.postMessage", 1.5)
    for obj in factory.failing_deployment("shop", "billing", image,
                                          factory.containerd_error("unauthorized", image)):
        bot.sim.apply(obj)
    alert = wait_for(lambda: bot.slack.channel_history(ALERTS[0]), what="the alert")[0]
    reply, name = click(bot, "ipb_verify_secret", button_value(alert, "ipb_verify_secret"),
                        alert)
    assert reply.status == 200
    assert "Posted in the alert's thread" in answer(bot, name)["text"]
    wait_for(lambda: any("uses no pull secret" in r.text
                         for r in bot.slack.channel_history(ALERTS[0])[0].replies),
             what="the thread answer")


# -- quota and verify-secret through Slack -----------------------------------------------------


def test_quota_command(registry: SimRegistry) -> None:
    from tests.support.stubs import DockerHubStub

    with DockerHubStub() as hub, start(registry, DOCKERHUB_AUTH_URL=f"{hub.url}/token",
                                       DOCKERHUB_REGISTRY_URL=hub.url) as bot:
        reply, name = command(bot, "quota")
        assert reply.status == 200 and reply.elapsed < ACK_DEADLINE
        text = answer(bot, name)["text"]
        assert "76 of 100 pulls left" in text and "NAT" in text


def test_ack_stays_under_3s_when_the_registry_never_answers(registry: SimRegistry) -> None:
    from tests.support.stubs import BlackholeServer

    hole = BlackholeServer().start()
    try:
        with start(registry, DOCKERHUB_AUTH_URL=f"http://127.0.0.1:{hole.port}/token",
                   DOCKERHUB_REGISTRY_URL=f"http://127.0.0.1:{hole.port}",
                   REGISTRY_TIMEOUT_SECONDS="4") as bot:
            reply, name = command(bot, "quota")
            assert reply.status == 200 and reply.elapsed < ACK_DEADLINE, reply.elapsed
            text = answer(bot, name, timeout=20)["text"]
            assert "Could not read the Docker Hub pull quota" in text
    finally:
        hole.stop()


def test_verify_secret_command_with_an_image(bot: BotUnderTest) -> None:
    import base64
    import json

    auth = base64.b64encode(b"ci-puller:s3cr3t-do-not-print").decode()
    config = {"auths": {"registry.internal": {"auth": auth}}}
    bot.sim.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                   "metadata": {"name": "regcred", "namespace": "shop"},
                   "data": {".dockerconfigjson": base64.b64encode(
                       json.dumps(config).encode()).decode()}})
    reply, name = command(bot, "verify-secret shop/regcred --image registry.internal/shop/web:v2.1")
    assert reply.status == 200
    text = answer(bot, name)["text"]
    assert "*valid*" in text and "`ci-puller`" in text  # the sim registry lets anyone pull
    assert "s3cr3t-do-not-print" not in text and auth not in text
    reply, name = command(bot, "verify-secret shop/nope --image nginx:1.27")
    assert "not found" in answer(bot, name)["text"]
