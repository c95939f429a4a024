"""The "cause is fixed" thread line and the resolution's saved time (bot/slack/blocks.py):
the button only where a retry can act, the command in read-only installs, and every value
from the cluster escaped."""

from __future__ import annotations

from typing import Any

from bot.alerts.incidents import Cleared, Incident, IncidentDiagnosis, Member
from bot.diagnosis.cleared import (
    ACCOUNT_REFERENCES,
    IMAGE_EXISTS,
    QUOTA_BACK,
    SECRET_CREATED,
    CauseCleared,
    QuotaFigure,
)
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.slack import actions
from bot.slack.blocks import cleared_message, resolved_message
from tests.diagnosis.kubelet import NOW, pod, pull_failure

T0 = NOW.timestamp()
UNAUTHORIZED = ('failed to pull and unpack image "{image}": failed to resolve reference '
                '"{image}": pull access denied, repository does not exist or may require '
                'authorization: server message: insufficient_scope: authorization failed')


def incident(image: str = "registry.internal/shop/web:v2.1", *,
             owner: tuple[str, str] | None = ("ReplicaSet", "web-7d9f8b6c5d"),
             change: CauseCleared | None = None, retry_at: float | None = T0 + 240,
             scope_kind: str = "workload") -> Incident:
    [entry] = diagnose(PodFacts(pod=pod(image, owner=owner, pull_secrets=("regcred",)),
                                events=pull_failure(image, UNAUTHORIZED.format(image=image)),
                                now=NOW)).diagnoses
    return Incident(
        id="inc-0123456789ab", key="k", cluster="c", cause=entry.cause, scope_kind=scope_kind,
        scope="shop/deployment/web", state="open", created_at=T0 - 60,
        diagnosis=IncidentDiagnosis.of(entry, "shop", "web-7d9f8b6c5d-x2x9q"),
        cleared=Cleared(T0, change or CauseCleared(SECRET_CREATED, "shop", "regcred"),
                        retry_at))


def buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in blocks if b["type"] == "actions"
            for e in b["elements"]}


def test_a_deployment_gets_retry_now_and_the_kubelets_own_time() -> None:
    text, blocks = cleared_message(incident(), now=T0)
    assert "pull secret `regcred` now exists in `shop`" in text
    assert "The kubelet retries on its own at <!date^" in text and "(in 4m" in text
    assert "*Retry now* restarts `deployment/web`" in text
    assert buttons(blocks) == {actions.RETRY: "inc-0123456789ab"}


def test_read_only_names_the_command_and_has_no_button() -> None:
    text, blocks = cleared_message(incident(), remediation=False, now=T0)
    assert buttons(blocks) == {}
    assert "run `kubectl rollout restart deployment/web -n shop`" in text
    bare = incident(owner=None)
    text, blocks = cleared_message(bare, remediation=False, now=T0)
    assert "run `kubectl delete pod web-7d9f8b6c5d-x2x9q -n shop`" in text


def test_a_bare_pod_is_deleted_and_the_line_says_nothing_re_creates_it() -> None:
    text, blocks = cleared_message(incident(owner=None), now=T0)
    assert buttons(blocks) == {actions.RETRY: "inc-0123456789ab"}
    assert "nothing re-creates a bare pod" in text
    [button] = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["confirm"]["text"]["text"].startswith("Delete `pod/web-7d9f8b6c5d-x2x9q`")


def test_no_button_where_a_retry_cannot_act() -> None:
    _, blocks = cleared_message(incident(scope_kind="registry"), now=T0)
    assert buttons(blocks) == {}
    _, blocks = cleared_message(incident(owner=("Job", "nightly")), now=T0)
    assert buttons(blocks) == {}


def test_a_service_account_fix_says_only_new_pods_get_it() -> None:
    change = CauseCleared(ACCOUNT_REFERENCES, "shop", "regcred", account="builder")
    text, _ = cleared_message(incident(change=change, retry_at=None), now=T0)
    assert "service account `builder` in `shop` now references pull secret `regcred`" in text
    assert "retries keep failing until the pods are replaced" in text


def test_values_from_the_cluster_are_escaped() -> None:
    hostile = "registry.internal/shop/web:<!channel>*x*"
    change = CauseCleared(IMAGE_EXISTS, "shop", "", image=hostile)
    text, blocks = cleared_message(incident(hostile, change=change), now=T0)
    assert "<!channel>" not in text and "<!channel>" not in str(blocks)
    assert "&lt;!channel&gt;" in text


def test_the_resolution_line_says_what_the_retry_saved() -> None:
    done = incident()
    done.resolved_at, done.retried_at, done.retry_saved = T0 + 5, T0 + 2, 235.0
    text, _ = resolved_message(done)
    assert "Retry now saved 3m: the kubelet's own retry was due at <!date^" in text
    done.retried_at = None
    assert "Retry now" not in resolved_message(done)[0]


# -- a rate-limited incident's Docker Hub quota came back (QUOTA_BACK) --------------------------


def quota_back(*figures: QuotaFigure, members: tuple[tuple[str, str], ...] = ()) -> Incident:
    """The registry's incident (Docker Hub), with failing pods of the given workloads."""
    change = CauseCleared(QUOTA_BACK, "shop", "", quotas=figures)
    inc = incident("docker.io/library/nginx:1.27", change=change, scope_kind="registry")
    for i, (kind, name) in enumerate(members):
        member = Member("shop", f"{name}-{i}", "web", "docker.io/library/nginx:1.27", kind,
                        name, T0 - 60)
        inc.members[member.id] = member
    return inc


def test_an_accounts_quota_back_says_whose_and_offers_retry_for_one_workload() -> None:
    inc = quota_back(QuotaFigure("hubuser", 87, 200, 2),
                     members=(("Deployment", "web"), ("Deployment", "web")))
    text, blocks = cleared_message(inc, now=T0)
    assert "Docker Hub quota for account `hubuser` is back: 87 of 200 left" in text
    assert "The kubelet retries on its own at" in text
    assert buttons(blocks) == {actions.RETRY: "inc-0123456789ab"}
    text, blocks = cleared_message(inc, remediation=False, now=T0)
    assert buttons(blocks) == {}
    assert "kubectl rollout restart deployment/web -n shop" in text


def test_several_workloads_or_another_ones_pods_get_no_button() -> None:
    two = quota_back(QuotaFigure("hubuser", 87, 200, 2),
                     members=(("Deployment", "web"), ("Deployment", "api")))
    assert buttons(cleared_message(two, now=T0)[1]) == {}
    other = quota_back(QuotaFigure("hubuser", 87, 200, 1), members=(("Deployment", "api"),))
    assert buttons(cleared_message(other, now=T0)[1]) == {}


def test_the_bots_ip_is_said_with_its_caveat_and_an_unlimited_account_as_such() -> None:
    text, _ = cleared_message(quota_back(QuotaFigure("", 87, 100), QuotaFigure("ci", None,
                                                                               None)), now=T0)
    assert ("the bot's own outbound IP has Docker Hub pulls again (87 of 100 left); your "
            "nodes share it only if they leave through the same NAT") in text
    assert "Docker Hub quota for account `ci` is back: no longer limited" in text


def test_a_hostile_account_name_is_escaped_and_the_record_round_trips() -> None:
    inc = quota_back(QuotaFigure("<!channel>", 5, 200, 1))
    text, blocks = cleared_message(inc, now=T0)
    assert "<!channel>" not in text and "<!channel>" not in str(blocks)
    assert inc.cleared is not None
    again = Cleared.from_json(inc.cleared.to_json())
    assert again == inc.cleared
    assert again is not None and again.change.quotas == (QuotaFigure("<!channel>", 5, 200, 1),)
