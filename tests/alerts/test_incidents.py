"""Incidents end to end through Slack: real Redis, the real slack_sdk, the Slack stand-in.

Diagnoses come from the real engine on kubelet-shaped pods and events; time is passed to
`tick(now=...)` explicitly, so group_wait / group_interval are exact rather than slept.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.alerts.incidents import IncidentDiagnosis, IncidentManager, Timing
from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, RegistryFacts
from bot.diagnosis.model import PodDiagnosis
from bot.sim.slack import SlackStandIn
from bot.slack.notifier import SlackNotifier, web_client
from bot.store import RedisStore, Store
from tests.diagnosis.kubelet import NOW, event, pod, pull_failure
from tests.support.private_redis import PrivateRedis

pytestmark = pytest.mark.integration

CHANNEL = "imagepull-alerts"
TIMING = Timing(group_wait=10, group_interval=60, repeat_interval=3600)
T0 = NOW.timestamp()
RATE_LIMITED = ('rpc error: code = Unknown desc = failed to pull and unpack image '
                '"docker.io/library/{repo}:1.0": failed to copy: httpReadSeeker: failed open: '
                'unexpected status code https://registry-1.docker.io/v2/library/{repo}/manifests/'
                'sha256:abc: 429 Too Many Requests - Server message: toomanyrequests: You have '
                'reached your pull rate limit. You may increase the limit by authenticating and '
                'upgrading: https://www.docker.com/increase-rate-limit')
NOT_FOUND = ('rpc error: code = NotFound desc = failed to pull and unpack image '
             '"docker.io/library/{repo}:lates": failed to resolve reference '
             '"docker.io/library/{repo}:lates": docker.io/library/{repo}:lates: not found')


def failing(deployment: str, index: int, image: str, error: str,
            registry: RegistryFacts | None = None) -> PodDiagnosis:
    name = f"{deployment}-7d9f8b6c5d-{index:05d}"
    facts = PodFacts(pod=pod(image, name=name, container=deployment,
                             owner=("ReplicaSet", f"{deployment}-7d9f8b6c5d")),
                     events=pull_failure(image, error, pod_name=name, container=deployment),
                     now=NOW, registry={image: registry} if registry else {})
    result = diagnose(facts)
    assert result.diagnoses, name
    return result


def outage(deployment: str, index: int) -> PodDiagnosis:
    return failing(deployment, index, f"{deployment}:1.0", RATE_LIMITED.format(repo=deployment))


def bad_tag(deployment: str, index: int = 0,
            registry: RegistryFacts | None = None) -> PodDiagnosis:
    return failing(deployment, index, f"{deployment}:lates", NOT_FOUND.format(repo=deployment),
                   registry)


#: What the registry answers about `web:lates`: no such tag, `latest` exists (confirmed).
ANSWER = RegistryFacts(
    probe_cause=Cause.TAG_NOT_FOUND, repository_exists=True, suggested_image="web:latest",
    suggestion_kind=Finding.TAG_SUGGESTION, digest="sha256:" + "b" * 64,
    probe_summary="asked docker.io for library/web:lates anonymously: 404 MANIFEST_UNKNOWN")
#: What the bot reports when the registry does not answer it.
SILENT = RegistryFacts(
    probe_summary="asked docker.io for library/web:lates anonymously: unreachable — no answer "
                  "within 5 s (from the bot's network; the nodes' view may differ)")


@dataclass
class Bot:
    """One bot process's incident side: its own manager and Slack client, shared store."""

    manager: IncidentManager

    def observe(self, *results: PodDiagnosis, at: float = T0) -> None:
        for result in results:
            self.manager.observe(result, now=at)

    def tick(self, at: float) -> None:
        self.manager.tick(now=at)


def new_bot(slack: SlackStandIn, store: Store, timing: Timing = TIMING,
            timeout: float = 10) -> Bot:
    client = web_client(slack.token, slack.api_url, timeout=timeout)
    notifier = SlackNotifier(client, CHANNEL, store, min_interval=0.01)
    return Bot(IncidentManager(store, notifier, cluster="prod", timing=timing))


def roots(slack: SlackStandIn) -> list[dict]:
    return [c.params for c in slack.calls_to("chat.postMessage")
            if c.ok and not c.params.get("thread_ts")]


def replies(slack: SlackStandIn) -> list[dict]:
    return [c.params for c in slack.calls_to("chat.postMessage")
            if c.ok and c.params.get("thread_ts")]


def test_registry_outage_is_one_alert_with_bounded_thread_updates(
        slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    deployments = [f"svc{i}" for i in range(10)]
    first_wave = [outage(d, i) for d in deployments for i in range(4)]  # 40 pods
    bot.observe(*first_wave)
    bot.tick(T0 + 5)  # inside group_wait: gather the storm
    assert roots(slack) == []
    bot.tick(T0 + 10)
    assert len(roots(slack)) == 1
    root = roots(slack)[0]
    text = str(root["blocks"])
    assert "Registry rate limit" in root["text"] and "docker.io" in text
    assert "10" in text  # 10 workloads
    bot.observe(*(outage(d, 4) for d in deployments), at=T0 + 20)  # 10 more pods
    for at in (T0 + 20, T0 + 40, T0 + 69):
        bot.tick(at)
    assert replies(slack) == []  # not before group_interval
    bot.tick(T0 + 71)
    bot.tick(T0 + 72)
    assert len(replies(slack)) == 1
    assert "10 more failing" in replies(slack)[0]["text"]
    assert "50 pods" in replies(slack)[0]["text"]
    assert len(roots(slack)) == 1
    edits = [c for c in slack.calls_to("chat.update") if c.ok]
    assert edits and "50" in str(edits[-1].params["blocks"])


def test_bad_tag_on_three_deployments_is_three_alerts(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(*(bad_tag(d) for d in ("web", "api", "worker")))
    bot.tick(T0 + 11)
    posted = roots(slack)
    assert len(posted) == 3
    for name in ("web", "api", "worker"):
        [message] = [p for p in posted if f"deployment/{name} " in str(p["blocks"])]
        assert f"kubectl set image deployment/{name} '{name}=" in str(message["blocks"])


def test_restart_mid_incident_continues_the_thread(slack: SlackStandIn, store: Store) -> None:
    first = new_bot(slack, store)
    first.observe(bad_tag("web"))
    first.tick(T0 + 11)
    [root] = [c for c in slack.calls_to("chat.postMessage") if c.ok]
    restarted = new_bot(slack, store)  # new process: new owner id, same Redis
    restarted.observe(bad_tag("web"), failing("web", 1, "web:lates",
                                              NOT_FOUND.format(repo="web")), at=T0 + 30)
    restarted.tick(T0 + 100)
    assert len(roots(slack)) == 1
    [reply] = replies(slack)
    assert reply["thread_ts"] == root.response["ts"]


def test_two_processes_post_each_incident_exactly_once(slack: SlackStandIn,
                                                       store: Store) -> None:
    slack.set_latency("chat.postMessage", 0.05)  # widen the race window
    bots = [new_bot(slack, store) for _ in range(2)]
    results = [bad_tag(d) for d in ("a", "b", "c")] + [outage("x", i) for i in range(5)]
    barrier = threading.Barrier(2)

    def run(bot: Bot) -> None:
        bot.observe(*results)
        barrier.wait()
        for step in range(5):
            bot.tick(T0 + 11 + step)

    threads = [threading.Thread(target=run, args=(b,)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(roots(slack)) == 4  # three bad tags + one registry incident


def test_slack_429_then_500s_delays_the_alert_but_sends_it_once(
        slack: SlackStandIn, store: Store) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    slack.fail_next("chat.postMessage", status=500, count=2)
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    started = time.monotonic()
    bot.tick(T0 + 11)
    assert time.monotonic() - started >= 1.0  # waited out Retry-After
    assert len(roots(slack)) == 1
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 500, 500, 200]
    bot.tick(T0 + 12)
    assert len(roots(slack)) == 1


def test_slack_down_loses_nothing_and_posts_once_when_back(slack: SlackStandIn,
                                                           store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    slack.down(refuse=True)  # connection refused: retries run out, the post is postponed
    bot.tick(T0 + 11)
    assert roots(slack) == []
    assert bot.manager.load(next(iter(bot.manager.active_ids()))).state == "pending"
    slack.up()
    bot.tick(T0 + 12)
    bot.tick(T0 + 13)
    assert len(roots(slack)) == 1


def test_fix_applied_resolves_the_thread_and_the_root(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    results = [failing("web", i, "web:lates", NOT_FOUND.format(repo="web")) for i in range(3)]
    bot.observe(*results)
    bot.tick(T0 + 11)
    for r in results:
        bot.manager.pod_recovered(r.namespace, r.pod)
    bot.tick(T0 + 300)
    [reply] = replies(slack)
    assert "Resolved after" in reply["text"]
    final = [c for c in slack.calls_to("chat.update") if c.ok][-1].params
    assert final["text"].startswith("Resolved:")
    assert not any(b["type"] == "actions" for b in final["blocks"])  # no buttons left
    fields = [f["text"] for b in final["blocks"] for f in b.get("fields", [])]
    assert "*Pods affected*\n3" in fields
    assert bot.manager.active_ids() == set()
    bot.observe(failing("web", 9, "web:lates", NOT_FOUND.format(repo="web")), at=T0 + 400)
    bot.tick(T0 + 411)
    assert len(roots(slack)) == 2  # a recurrence is a new incident with a new thread


def test_pods_that_recover_inside_group_wait_are_never_posted(slack: SlackStandIn,
                                                              store: Store) -> None:
    bot = new_bot(slack, store)
    result = bad_tag("web")
    bot.observe(result)
    bot.manager.pod_recovered(result.namespace, result.pod)
    bot.tick(T0 + 11)
    bot.tick(T0 + 500)
    assert slack.calls_to("chat.postMessage") == []


def test_crash_loop_produces_no_alert(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    crash = pod("web:1.0", waiting_reason="CrashLoopBackOff",
                waiting_message="back-off 5m0s restarting failed container=web")
    events = [event("BackOff", "Back-off restarting failed container web in pod web_shop",
                    count=30)]
    result = diagnose(PodFacts(pod=crash, events=events, now=NOW))
    bot.observe(result)
    bot.tick(T0 + 100)
    assert slack.calls == [] or slack.calls_to("chat.postMessage") == []


def test_reminder_after_repeat_interval(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    bot.tick(T0 + 11 + 3599)
    assert replies(slack) == []
    bot.tick(T0 + 11 + 3601)
    [reminder] = replies(slack)
    assert "Still failing after 1h 00m" in reminder["text"]


def test_root_message_respects_slack_limits(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(*(outage(f"svc{i}", j) for i in range(40) for j in range(2)))
    bot.tick(T0 + 11)
    [root] = roots(slack)
    assert len(root["blocks"]) <= 50
    for block in root["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    assert "…and 25 more" in str(root["blocks"])


def test_registry_alert_counts_the_images_it_hits(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(outage("web", 0), outage("cache", 0), outage("web", 1))
    bot.tick(T0 + 11)
    [root] = roots(slack)
    fields = [f["text"] for b in root["blocks"] for f in b.get("fields", [])]
    assert "*Images*\n2 images, e.g. `cache:1.0`" in fields


# -- a post whose answer is lost is looked for, not posted again (issue 8, defect 3) -------------
def test_root_answered_after_the_client_timeout_is_found_not_posted_again(
        slack: SlackStandIn, store: Store) -> None:
    slack.set_latency("chat.postMessage", 1.5)  # stored at once, answered after the timeout
    bot = new_bot(slack, store, timeout=1)
    bot.observe(bad_tag("web"))
    for at in (T0 + 11, T0 + 12, T0 + 13):
        bot.tick(at)
    [root] = slack.channel_history(CHANNEL)
    [incident_id] = bot.manager.active_ids()
    incident = bot.manager.load(incident_id)
    assert incident is not None and incident.state == "open"
    assert incident.thread_ts == root.ts
    assert slack.calls_to("conversations.history")  # it looked instead of re-posting


def test_5xx_after_slack_stored_the_root_is_not_resent_by_the_sdk(
        slack: SlackStandIn, store: Store) -> None:
    slack.fail_next("chat.postMessage", status=503, effect=True)  # stored, then 503
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    bot.tick(T0 + 12)
    assert len(slack.channel_history(CHANNEL)) == 1
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [503]


def test_thread_update_answered_after_the_timeout_is_posted_once(
        slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store, timeout=1)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    slack.set_latency("chat.postMessage", 1.5)
    bot.observe(failing("web", 1, "web:lates", NOT_FOUND.format(repo="web")), at=T0 + 30)
    for at in (T0 + 71, T0 + 72, T0 + 140):
        bot.tick(at)
    [root] = slack.channel_history(CHANNEL)
    assert len(root.replies) == 1, [r.text for r in root.replies]
    assert slack.calls_to("conversations.replies")


def test_every_message_names_its_incident_and_part_in_metadata(
        slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    first = bad_tag("web")
    second = failing("web", 1, "web:lates", NOT_FOUND.format(repo="web"))
    bot.observe(first)
    bot.tick(T0 + 11)
    bot.observe(first, second, at=T0 + 30)
    bot.tick(T0 + 71)
    bot.tick(T0 + 71 + 3601)  # a reminder
    bot.tick(T0 + 71 + 7202)  # and another: a new part, not a repeat of the first
    for r in (first, second):
        bot.manager.pod_recovered(r.namespace, r.pod)
    bot.tick(T0 + 8000)
    [root] = slack.channel_history(CHANNEL)
    messages = [root, *root.replies]
    payloads = [m.metadata["event_payload"] for m in messages if m.metadata]
    assert len(payloads) == len(messages) == 5
    assert {p["incident_id"] for p in payloads} == {payloads[0]["incident_id"]}
    assert [p["part"] for p in payloads] == ["root", "update:1", "remind:1", "remind:2",
                                             "resolved"]
    assert {m.metadata["event_type"] for m in messages if m.metadata} == {"imagepull_incident"}


def test_without_history_scope_a_lost_answer_is_posted_again_not_lost(
        slack: SlackStandIn, store: Store) -> None:
    """An app not yet granted channels:history cannot look: it posts again (a duplicate is
    better than a lost alert) and logs what to fix."""
    slack.set_latency("chat.postMessage", 1.5)
    slack.fail_next("conversations.history", status=200, error="missing_scope", count=10)
    bot = new_bot(slack, store, timeout=1)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    slack.clear_latency()
    bot.tick(T0 + 12)
    [incident_id] = bot.manager.active_ids()
    incident = bot.manager.load(incident_id)
    assert incident is not None and incident.state == "open"
    assert incident.thread_ts in {m.ts for m in slack.channel_history(CHANNEL)}


def test_the_diagnosis_reads_back_typed_and_an_old_record_keeps_its_button(
        slack: SlackStandIn, store: Store) -> None:
    """The incident's diagnosis is stored as the JSON contract and loads as IncidentDiagnosis;
    a record stored before `suggested_image` was a key (the suggestion only inside the first
    fix's command) still loads, with the suggestion, so its alert keeps the Set image button."""
    image = "shop/web:lates"
    suggestion = RegistryFacts(probe_cause=Cause.TAG_NOT_FOUND, repository_exists=True,
                               suggested_image="shop/web:latest",
                               suggestion_kind=Finding.TAG_SUGGESTION)
    result = diagnose(PodFacts(
        pod=pod(image), events=pull_failure(image, NOT_FOUND.format(repo="shop/web")), now=NOW,
        registry={image: suggestion}))
    [entry] = result.diagnoses
    bot = new_bot(slack, store)
    [incident_id] = bot.manager.observe(result, now=T0)
    incident = bot.manager.load(incident_id)
    assert incident is not None
    assert incident.diagnosis == IncidentDiagnosis.of(entry, "shop", "web-7d9f8b6c5d-x2x9q")
    assert incident.diagnosis.suggested_image == "shop/web:latest"
    assert not incident.transient

    key = store.key("incident", incident_id)
    stored = json.loads(store.hgetall(key)["diagnosis"])
    assert stored == {**entry.to_json(), "namespace": "shop", "pod": "web-7d9f8b6c5d-x2x9q"}
    legacy = {k: v for k, v in stored.items() if k not in ("suggested_image", "init_container")}
    store.hset(key, {"diagnosis": json.dumps(legacy)})
    old = bot.manager.load(incident_id)
    assert old is not None and old.diagnosis == incident.diagnosis

    bot.tick(T0 + 10)
    [root] = roots(slack)
    buttons = [e for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "Set image to shop/web:latest" in [b["text"]["text"] for b in buttons]


def test_an_old_record_without_a_suggestion_has_none(store: Store, slack: SlackStandIn) -> None:
    bot = new_bot(slack, store)
    result = bad_tag("api")
    [incident_id] = bot.manager.observe(result, now=T0)
    key = store.key("incident", incident_id)
    stored = json.loads(store.hgetall(key)["diagnosis"])
    assert stored["suggested_image"] is None
    del stored["suggested_image"]
    store.hset(key, {"diagnosis": json.dumps(stored)})
    incident = bot.manager.load(incident_id)
    assert incident is not None and incident.diagnosis.suggested_image is None
    assert incident.diagnosis.fixes == result.diagnoses[0].fixes


# -- the registry's answer after the alert (issue 10, Deliver 3) --------------------------------


def observe_refined(bot: Bot, facts: RegistryFacts, *indexes: int, at: float) -> None:
    """The pipeline's second observation of `web` pods: with what the registry answered."""
    for index in indexes:
        bot.manager.observe(bad_tag("web", index, facts), now=at,
                            registry={"web:lates": facts})


def edits(slack: SlackStandIn) -> list[str]:
    return [json.dumps(c.params["blocks"], ensure_ascii=False)
            for c in slack.calls_to("chat.update") if c.ok]


def test_an_answer_inside_group_wait_goes_out_with_the_root(slack: SlackStandIn,
                                                          store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))  # the first look: the kubelet's facts
    bot.tick(T0 + 5)
    observe_refined(bot, ANSWER, 0, at=T0 + 6)
    bot.tick(T0 + 11)
    [root] = roots(slack)
    blocks = json.dumps(root["blocks"], ensure_ascii=False)
    assert "404 MANIFEST_UNKNOWN" in blocks and "Set image to web:latest" in blocks
    bot.tick(T0 + 12)
    assert edits(slack) == []  # nothing to edit: the root had it


def test_an_answer_after_the_root_edits_it_once_whatever_the_pods_and_replicas(
        slack: SlackStandIn, store: Store) -> None:
    slack.set_latency("chat.update", 0.05)  # widen the race window
    bots = [new_bot(slack, store) for _ in range(2)]
    bots[0].observe(*(bad_tag("web", i) for i in range(5)))
    bots[0].tick(T0 + 11)
    [root] = roots(slack)
    assert "MANIFEST_UNKNOWN" not in json.dumps(root["blocks"]) and edits(slack) == []
    barrier = threading.Barrier(2)

    def run(bot: Bot) -> None:  # each replica refines every pod, and ticks
        barrier.wait()
        observe_refined(bot, ANSWER, *range(5), at=T0 + 14)
        for step in range(4):
            bot.tick(T0 + 15 + step)

    threads = [threading.Thread(target=run, args=(b,)) for b in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [edit] = edits(slack)
    assert "404 MANIFEST_UNKNOWN" in edit and "Set image to web:latest" in edit
    assert slack.calls_to("chat.update")[0].params["ts"] == slack.calls_to(
        "chat.postMessage")[0].response["ts"]
    # a shallower diagnosis later (the registry unreachable, the kubelet's alone) changes
    # nothing: the incident keeps the registry's answer, the root is not edited again
    observe_refined(bots[1], SILENT, 0, at=T0 + 30)
    bots[1].observe(bad_tag("web", 1), at=T0 + 31)
    for bot in bots:
        bot.tick(T0 + 32)
    assert len(edits(slack)) == 1 and len(roots(slack)) == 1 and replies(slack) == []
    [incident_id] = bots[0].manager.active_ids()
    incident = bots[0].manager.load(incident_id)
    assert incident is not None and incident.diagnosis.suggested_image == "web:latest"


def test_a_silent_registry_is_evidence_and_its_later_answer_edits_again(
        slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    observe_refined(bot, SILENT, 0, at=T0 + 20)
    bot.tick(T0 + 21)
    bot.tick(T0 + 22)
    [silent] = edits(slack)
    assert "no answer within 5 s" in silent and "Set image" not in silent
    observe_refined(bot, ANSWER, 0, at=T0 + 90)  # asked again a minute later: it answers
    bot.tick(T0 + 91)
    bot.tick(T0 + 92)
    assert len(edits(slack)) == 2 and "Set image to web:latest" in edits(slack)[-1]


def test_an_edit_slack_refuses_stays_due(slack: SlackStandIn, store: Store) -> None:
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    bot.tick(T0 + 11)
    slack.fail_next("chat.update", status=200, error="message_not_found")
    observe_refined(bot, ANSWER, 0, at=T0 + 20)
    bot.tick(T0 + 21)
    assert edits(slack) == []
    bot.tick(T0 + 22)
    [edit] = edits(slack)
    assert "Set image to web:latest" in edit


def test_a_pod_moved_by_the_answer_inside_group_wait_leaves_no_trace(
        slack: SlackStandIn, store: Store) -> None:
    """The kubelet said "not found"; the registry says the repository does not exist: the
    pod moves to that incident, and the one it left was never posted, so nobody hears of it."""
    bot = new_bot(slack, store)
    bot.observe(bad_tag("web"))
    gone = RegistryFacts(probe_cause=Cause.REPOSITORY_NOT_FOUND, repository_exists=False,
                         probe_summary="asked docker.io for library/web:lates: 404 NAME_UNKNOWN")
    observe_refined(bot, gone, 0, at=T0 + 3)
    for at in (T0 + 4, T0 + 11, T0 + 80, T0 + 200):
        bot.tick(at)
    [root] = roots(slack)
    assert "Image repository not found" in root["text"]
    assert replies(slack) == [] and edits(slack) == []
    assert len(bot.manager.active_ids()) == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of the test's own: INFO commandstats counts for the whole server, and on the
    shared one other tests (other xdist workers) add their HGETALLs to the count."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def hgetall_calls(url: str) -> int:
    """HGETALLs the Redis server at `url` has answered so far (INFO commandstats)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))
    finally:
        client.close()


def test_a_quiet_incident_costs_the_tick_one_field_not_its_members(
        slack: SlackStandIn, own_redis: PrivateRedis) -> None:
    """An open incident with 200 pods and nothing due: each tick reads its version field,
    not its members (at 10,000 pods, loading every member every second was the bot's main
    cost while an outage lasts). A new member changes the version: the next tick loads it,
    and the update goes out after group_interval as before; a reminder still comes on time."""
    bot = new_bot(slack, RedisStore(own_redis.url, "quiet"))
    bot.observe(*(outage(f"svc{i % 10}", i) for i in range(200)))
    bot.tick(T0 + 10)
    assert len(roots(slack)) == 1
    bot.tick(T0 + 11)  # found quiet
    before = hgetall_calls(own_redis.url)
    for second in range(12, 40):
        bot.tick(T0 + second)
    assert hgetall_calls(own_redis.url) == before  # nothing loaded while nothing changed
    assert replies(slack) == []
    bot.observe(outage("svc0", 500), at=T0 + 40)
    bot.tick(T0 + 40)  # the version moved: loaded (not yet due: group_interval)
    assert hgetall_calls(own_redis.url) > before
    bot.tick(T0 + 71)
    assert len(replies(slack)) == 1 and "201 pods" in replies(slack)[0]["text"]
    bot.tick(T0 + 71 + 3601)  # repeat_interval after the last notification: time alone
    assert len(replies(slack)) == 2
