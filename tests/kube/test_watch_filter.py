"""pull_signal: which kubelet events make the watcher look at a pod again (pure, no server)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.kube.watch import PodSignal, pull_signal, stuck_pod_signal
from bot.sim import factory

DATA = Path(__file__).resolve().parents[1] / "data" / "kubelet_messages.yaml"
PUBLIC_DATA = DATA.with_name("kubelet_messages_public.yaml")
SCENARIOS = Path(__file__).resolve().parents[2] / "bot" / "sim" / "scenarios"
NOW = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)
IMAGE = "nginx:lates"


def _timeline() -> list[dict[str, Any]]:
    return factory.failing_deployment("shop", "web", IMAGE,
                                      factory.containerd_error("not_found", IMAGE), now=NOW)


def _events(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "Event"]


def _event(reason: str, message: str, type_: str = "Warning", **extra: Any) -> dict[str, Any]:
    pod = next(o for o in _timeline() if o["kind"] == "Pod")
    ev = factory.kubelet_event(pod, "spec.containers{web}", type_, reason, message, 3,
                               "2026-11-28T14:50:00Z", "2026-11-28T14:59:00Z")
    ev.update(extra)
    return ev


def test_the_kubelet_sequence_of_a_failing_pull() -> None:
    signals = [(e["reason"], e["message"], pull_signal(e)) for e in _events(_timeline())]
    kinds = [(reason, s.kind if s else None) for reason, _, s in signals]
    assert kinds == [
        ("Scheduled", None),
        ("Pulling", None),
        ("Failed", "pull_failure"),  # Failed to pull image "x": <containerd error>
        ("Failed", "pull_failure"),  # Error: ErrImagePull
        ("BackOff", "pull_failure"),  # Normal, Back-off pulling image "x"
        ("Failed", "pull_failure"),  # Error: ImagePullBackOff
    ]
    pod = factory.pod_names("shop", "web", IMAGE)[0]
    first = signals[2][2]
    assert first == PodSignal("shop", pod, "pull_failure", "Failed", signals[2][1],
                              datetime(2026, 11, 28, 14, 59, 1, tzinfo=UTC))


def test_image_backoff_is_normal_and_signalled() -> None:
    backoff = next(e for e in _events(_timeline()) if e["reason"] == "BackOff")
    assert backoff["type"] == "Normal"
    signal = pull_signal(backoff)
    assert signal is not None and signal.kind == "pull_failure"
    assert signal.message == f'Back-off pulling image "{IMAGE}"'


def test_backoff_with_the_kubelet_1_30_error_suffix() -> None:
    text = (f'Back-off pulling image "{IMAGE}": ErrImagePull: '
            f'{factory.containerd_error("not_found", IMAGE)}')
    signal = pull_signal(_event("BackOff", text, "Normal"))
    assert signal is not None and signal.kind == "pull_failure"


def test_crash_loop_backoff_is_not_a_pull() -> None:
    objs = factory.crashloop_deployment("shop", "app", "registry.internal/shop/app:1.4.2",
                                        now=NOW)
    by_reason = {e["reason"]: e for e in _events(objs)}
    assert by_reason["BackOff"]["type"] == "Warning"
    assert by_reason["BackOff"]["message"].startswith("Back-off restarting failed container app")
    assert pull_signal(by_reason["BackOff"]) is None
    # Even written as Normal, or in the short form of older kubelets:
    assert pull_signal(_event("BackOff", "Back-off restarting failed container", "Normal")) is None
    # The pod still had its image: that Pulled is a (harmless) chance to resolve.
    pulled = pull_signal(by_reason["Pulled"])
    assert pulled is not None and pulled.kind == "pulled"


@pytest.mark.parametrize("message", [
    "Error: ErrImagePull", "Error: ImagePullBackOff", "Error: ErrImageNeverPull",
    "Error: InvalidImageName", "Error: ImageInspectError", "Error: RegistryUnavailable",
])
def test_failed_error_reasons(message: str) -> None:
    signal = pull_signal(_event("Failed", message))
    assert signal is not None and signal.kind == "pull_failure" and signal.message == message


@pytest.mark.parametrize(("reason", "message"), [
    ("ErrImageNeverPull", 'Container image "registry.internal/shop/worker:1.0" is not present '
                          "with pull policy of Never"),
    ("InspectFailed", 'Failed to apply default image tag "Shop/Web:1.0": couldn\'t parse image '
                      'reference "Shop/Web:1.0": invalid reference format: repository name '
                      "must be lowercase"),
    ("FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull secrets (regcred); "
                                        "attempting to pull the image may not succeed."),
])
def test_pull_reasons_whatever_the_text(reason: str, message: str) -> None:
    signal = pull_signal(_event(reason, message))
    assert signal is not None and signal.kind == "pull_failure" and signal.reason == reason


@pytest.mark.parametrize(("reason", "message"), [
    ("Failed", "Error: failed to create containerd task: failed to create shim task: OCI "
               "runtime create failed: runc create failed: exec: \"/app\": permission denied"),
    ("Failed", "Error: container has runAsNonRoot and image will run as root"),
    ("Failed", "Liveness probe failed: HTTP probe failed with statuscode: 500"),
    ("Pulling", 'Pulling image "nginx:lates"'),
    ("Created", "Created container: web"),
    ("Killing", "Stopping container web"),
    ("BackOff", "Back-off restarting failed container web in pod web-1_shop(uid)"),
    ("Unhealthy", "Readiness probe failed: connection refused"),
])
def test_other_kubelet_events_are_ignored(reason: str, message: str) -> None:
    assert pull_signal(_event(reason, message)) is None


def test_pulled_is_a_chance_to_resolve() -> None:
    pod = next(o for o in _timeline() if o["kind"] == "Pod")
    _, events = factory.recovered(pod, now=NOW)
    pulled = next(e for e in events if e["reason"] == "Pulled")
    assert pulled["message"].startswith(f'Successfully pulled image "{IMAGE}" in 1.2s')
    signal = pull_signal(pulled)
    assert signal is not None and signal.kind == "pulled" and signal.observed_at == NOW
    assert [pull_signal(e) for e in events if e["reason"] != "Pulled"] == [None, None]


def test_only_events_about_pods() -> None:
    failed = next(e for e in _events(_timeline()) if e["message"].startswith("Failed to pull"))
    for kind in ("ReplicaSet", "Deployment", "Node"):
        other = copy.deepcopy(failed)
        other["involvedObject"]["kind"] = kind
        assert pull_signal(other) is None
    del failed["involvedObject"]["kind"]
    assert pull_signal(failed) is None


def test_only_the_kubelet() -> None:
    failed = next(e for e in _events(_timeline()) if e["message"].startswith("Failed to pull"))
    forged = copy.deepcopy(failed)
    forged["source"] = {"component": "some-operator"}
    forged["reportingComponent"] = "some-operator"
    assert pull_signal(forged) is None
    stripped = copy.deepcopy(failed)  # pasted / exported without source: judged by its text
    stripped.pop("source")
    stripped.pop("reportingComponent")
    assert pull_signal(stripped) is not None


def test_events_k8s_io_dialect() -> None:
    """Written through events.k8s.io and read as core/v1: null count and timestamps, series,
    eventTime, reportingComponent instead of source."""
    ev = _event("Failed", f'Failed to pull image "{IMAGE}": '
                f'{factory.containerd_error("rate_limited", IMAGE)}')
    ev.update({"count": None, "firstTimestamp": None, "lastTimestamp": None, "source": {},
               "eventTime": "2026-11-28T14:40:00.123456Z",
               "series": {"count": 4, "lastObservedTime": "2026-11-28T14:58:30.000000Z"},
               "reportingComponent": "kubelet", "reportingInstance": "worker-1"})
    signal = pull_signal(ev)
    assert signal is not None and signal.kind == "pull_failure"
    assert signal.observed_at == datetime(2026, 11, 28, 14, 58, 30, tzinfo=UTC)
    ev.pop("series")  # a first occurrence: eventTime only
    signal = pull_signal(ev)
    assert signal is not None
    assert signal.observed_at == datetime(2026, 11, 28, 14, 40, 0, 123456, tzinfo=UTC)
    ev["note"], ev["message"] = ev.pop("message"), None  # events.k8s.io field name
    signal = pull_signal(ev)
    assert signal is not None and signal.message.startswith("Failed to pull image")


def _corpus() -> list[dict[str, Any]]:
    entries = [e for path in (DATA, PUBLIC_DATA)
               for e in yaml.safe_load(path.read_text(encoding="utf-8"))]
    return [e for e in entries if e.get("reason") in ("Failed", "BackOff", "Pulled")]


@pytest.mark.parametrize("entry", _corpus(), ids=lambda e: str(e["source"])[:40])
def test_real_kubelet_texts(entry: dict[str, Any]) -> None:
    """containerd, CRI-O and dockershim texts from public bug reports."""
    text, reason = entry["text"], entry["reason"]
    signal = pull_signal(_event(reason, text, "Normal" if reason != "Failed" else "Warning"))
    if "restarting failed container" in text:
        assert signal is None
    elif reason == "Pulled":
        assert signal is not None and signal.kind == "pulled"
    else:
        assert signal is not None and signal.kind == "pull_failure", text


# -- the sweep's view of a pod ----------------------------------------------------------------
def test_stuck_pod_signal() -> None:
    pod = next(o for o in _timeline() if o["kind"] == "Pod")
    signal = stuck_pod_signal(pod, NOW)
    assert signal is not None and (signal.kind, signal.reason) == ("sweep", "ImagePullBackOff")
    assert signal.message.startswith(f'Back-off pulling image "{IMAGE}": ErrImagePull: rpc')
    running, _ = factory.recovered(pod, now=NOW)
    assert stuck_pod_signal(running, NOW) is None
    crash = next(o for o in factory.crashloop_deployment("shop", "app", "app:1", now=NOW)
                 if o["kind"] == "Pod")
    assert stuck_pod_signal(crash, NOW) is None


# -- the factory writes what the scenario files hold -------------------------------------------
@pytest.mark.parametrize(("kind", "scenario", "image"), [
    ("not_found", "tag-not-found", "nginx:lates"),
    ("unauthorized", "auth-required", "registry.internal/team/billing:v2.1"),
    ("rate_limited", "rate-limited", "nginx:1.27.3"),
    ("dns", "dns-failure", "registy.internal/payments:1.0"),
    ("timeout", "network-timeout", "registry.internal/shop/search:2.3"),
    ("refused", "connection-refused", "registry.internal/shop/inventory:4.1"),
    ("x509", "tls-untrusted", "registry.internal/shop/ledger:1.8"),
])
def test_containerd_errors_match_the_scenarios(kind: str, scenario: str, image: str) -> None:
    docs = list(yaml.safe_load_all((SCENARIOS / f"{scenario}.yaml").read_text("utf-8")))
    failed = [d["message"] for d in docs if d and d.get("kind") == "Event"
              and str(d.get("message", "")).startswith(f'Failed to pull image "{image}"')]
    assert failed == [f'Failed to pull image "{image}": '
                      f"{factory.containerd_error(kind, image)}"]


def test_failing_deployment_matches_the_scenario_shapes() -> None:
    objs = factory.failing_deployment("shop", "web", IMAGE,
                                      factory.containerd_error("not_found", IMAGE), replicas=2,
                                      pull_secrets=["regcred"], now=NOW)
    dep, rs, *rest = objs
    assert (dep["kind"], rs["kind"]) == ("Deployment", "ReplicaSet")
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}" and len(h) == 10
    assert rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
    pods = [o for o in rest if o["kind"] == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == factory.pod_names("shop", "web", IMAGE, 2)
    for p in pods:
        assert p["metadata"]["name"].startswith(f"web-{h}-")
        assert len(p["metadata"]["name"]) == len(f"web-{h}-") + 5
        assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert p["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        events = [e for e in rest if e["kind"] == "Event"
                  and e["involvedObject"]["uid"] == p["metadata"]["uid"]]
        assert [(e["type"], e["reason"]) for e in events] == [
            ("Normal", "Scheduled"), ("Normal", "Pulling"), ("Warning", "Failed"),
            ("Warning", "Failed"), ("Normal", "BackOff"), ("Warning", "Failed")]
        assert all(e["involvedObject"]["fieldPath"] == "spec.containers{web}"
                   for e in events[1:])
    scenario = [d for d in yaml.safe_load_all((SCENARIOS / "tag-not-found.yaml").read_text(
        "utf-8")) if d]
    for kind in ("Deployment", "ReplicaSet", "Pod", "Event"):
        ours = next(o for o in objs if o["kind"] == kind)
        theirs = next(d for d in scenario if d.get("kind") == kind)
        assert set(ours) == set(theirs), kind
        assert set(ours["metadata"]) == set(theirs["metadata"]), kind
    waiting = pods[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    theirs_pod = next(d for d in scenario if d.get("kind") == "Pod")
    assert waiting == theirs_pod["status"]["containerStatuses"][0]["state"]["waiting"]
    # same seed, same objects
    assert objs == factory.failing_deployment(
        "shop", "web", IMAGE, factory.containerd_error("not_found", IMAGE), replicas=2,
        pull_secrets=["regcred"], now=NOW)


def test_repeat_is_a_higher_count_and_a_new_last_time() -> None:
    backoff = next(e for e in _events(_timeline()) if e["reason"] == "BackOff")
    again = factory.repeat(backoff, now=NOW)
    assert again["count"] == backoff["count"] + 1
    assert again["lastTimestamp"] == "2026-11-28T15:00:00Z"
    assert again["metadata"]["name"] == backoff["metadata"]["name"]
    assert again["firstTimestamp"] == backoff["firstTimestamp"]
    series = dict(backoff, series={"count": 2, "lastObservedTime": "2026-11-28T14:00:00.000000Z"})
    again = factory.repeat(series, count=9, now=NOW)
    assert again["series"] == {"count": 9, "lastObservedTime": "2026-11-28T15:00:00.000000Z"}
