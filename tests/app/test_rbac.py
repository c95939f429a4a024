"""Least privilege, for every install profile: what a profile grants is exactly what the bot,
configured as that profile configures it, uses. No call is refused, no granted rule unused.

The per-profile design:

* **Grants from the rendered overlay.** `kubectl kustomize deploy/overlays/<profile>` (through
  tests/support/profiles.py), then every binding of the bot's service account followed to its
  rules, as the RBAC authorizer does: ClusterRoleBindings grant cluster-wide, RoleBindings only
  in their namespace. The source files (deploy/rbac/<role>/role.yaml) are never read here, so
  what is tested is what `kubectl apply -k` would create.
* **Enforced like the apiserver.** The scenario cluster (bot/sim/server.py `enforce_rbac`)
  refuses every request the grants do not cover with the apiserver's 403; a namespace's
  rules allow requests in that namespace only (not a list across all namespaces, not a node).
* **Configured like the Deployment.** The profile's configMap (`READ_SECRETS`,
  `REMEDIATION_ENABLED`, `WATCH_NAMESPACES`) goes into the environment the bot reads.
* **Everything the bot does in production**: diagnose every scenario's pods (owner chains,
  secrets, nodes) in the namespaces it watches, verify a pull secret, run the prevention audit
  (cluster-wide or of WATCH_NAMESPACES, and of one namespace), run the event watches,
  the pod view, the fact watches and the sweep, and every remediation on every workload
  through the approval service (rollout restart, set image, the refusals that read a
  ReplicaSet's or Job's owner, and "Retry now" of a pod: a DELETE) — or, read-only, see each
  refused in words with no PATCH sent.

Adding a rule to one role file reaches every profile that includes the role, and this test
then demands that the code use it; a profile that leaves a role out must configure the bot
not to need it. The only refusals allowed are the namespaced profile's reads of cluster-scoped
objects, which Roles cannot grant: a node once per client (the bot then stops asking, see
test_a_namespaced_install_asks_for_a_node_once) and the namespaces' labels once per audit
(the report says it skipped them). With read-only, the alerts the bot posts
carry no remediation buttons (test_read_only_alerts_have_no_remediation_buttons).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.app import build_runtime
from bot.chatops.approvals import ApprovalService
from bot.cli.main import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, main
from bot.config import Settings, load_settings
from bot.kube.client import KubeClient
from bot.kube.fact_watch import WatchedFacts
from bot.kube.remediation import RemediationRefused, set_image
from bot.kube.view import PodView
from bot.kube.watch import EventWatcher, PodSweeper
from bot.routines.presence import Heartbeat, cluster_uid
from bot.sim import SimCluster, bundled_scenarios, factory, load_scenario
from bot.sim.slack import SlackStandIn
from bot.slack import actions
from bot.slack.approvers import Approvers
from bot.store import MemoryStore
from tests.support.profiles import PROFILES, Grants, config, grants, render
from tests.support.redis import redis_store
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

Triple = tuple[str, str, str]  # (verb, API group, resource)
NODE_READ: Triple = ("get", "", "nodes")
NAMESPACE_READ: Triple = ("get", "", "namespaces")
#: the escalation bundle's webhook lists (deploy/rbac/cluster-read): cluster-scoped
WEBHOOK_LISTS: set[Triple] = {
    ("list", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("list", "admissionregistration.k8s.io", "validatingwebhookconfigurations")}


def granted(rules: list[dict[str, Any]]) -> set[Triple]:
    return {(verb, group, resource) for r in rules for group in r["apiGroups"]
            for resource in r["resources"] for verb in r["verbs"]}


def all_granted(grant: Grants) -> set[Triple]:
    found = granted(grant.cluster)
    for rules in grant.namespaced.values():
        found |= granted(rules)
    return found


@pytest.fixture
def profile_env(request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> tuple[str, Grants, Settings]:
    """The profile's grants, and the bot's settings from its configMap (set in the
    environment, where the Deployment's envFrom puts them)."""
    profile = str(request.param)
    docs = render(profile)
    for name, value in config(docs).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REGISTRY_PROBE", "false")
    return profile, grants(docs), load_settings()


@pytest.mark.parametrize("profile_env", PROFILES, indirect=True)
def test_the_bot_needs_every_granted_permission_and_no_other(
        profile_env: tuple[str, Grants, Settings], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    profile, grant, settings = profile_env
    watched = settings.watch_namespaces or None
    used: set[Triple] = set()
    denied: list[Triple] = []
    remediated: list[str] = []
    outputs: list[dict[str, Any]] = []
    bundles: list[dict[str, Any]] = []
    for path in bundled_scenarios():
        scenario = load_scenario(path)
        with SimCluster([scenario]) as sim:
            sim.enforce_rbac(grant.cluster, grant.namespaced)
            kubeconfig = str(sim.write_kubeconfig(tmp_path / "kubeconfig"))
            for obj in scenario.objects:
                namespace = obj["metadata"].get("namespace")
                if watched and namespace not in watched:
                    continue
                if obj["kind"] == "Pod":
                    capsys.readouterr()
                    ref = f"{namespace}/{obj['metadata']['name']}"
                    assert main(["diagnose", ref, "--kubeconfig", kubeconfig,
                                 "-o", "json"]) == 0
                    outputs.append(json.loads(capsys.readouterr().out))
                    # the escalation bundle: webhooks, node, version, secrets' metadata
                    assert main(["bundle", ref, "--kubeconfig", kubeconfig, "-o", "json"]) == 0
                    bundles.append(json.loads(capsys.readouterr().out))
                if obj["kind"] == "Secret" and namespace == "shop":
                    code = main(["verify-secret", f"shop/{obj['metadata']['name']}", "--image",
                                 "127.0.0.1:1/team/app:1", "--kubeconfig", kubeconfig])
                    if not settings.read_secrets:
                        assert code == EXIT_BAD_INPUT
                        assert "READ_SECRETS=false" in capsys.readouterr().err
            # the prevention audit, cluster-wide (or WATCH_NAMESPACES) and of one namespace
            assert main(["audit", "--kubeconfig", kubeconfig]) in (EXIT_OK, EXIT_FINDINGS)
            for ns in [o["metadata"]["name"] for o in scenario.objects
                       if o["kind"] == "Namespace"
                       and (not watched or o["metadata"]["name"] in watched)][:1]:
                assert main(["audit", "-n", ns, "--kubeconfig", kubeconfig]) in (
                    EXIT_OK, EXIT_FINDINGS)
            kube = KubeClient.from_environment(kubeconfig, read_secrets=settings.read_secrets)
            watchers = [EventWatcher(kube, MemoryStore(), lambda s: None, namespace=ns,
                                     idle_timeout=0.3) for ns in watched or [None]]
            view = PodView(kube, namespaces=watched, idle_timeout=0.3)
            facts = WatchedFacts(kube, watched, idle_timeout=0.3)
            for watcher in watchers:
                watcher.start()
            view.start()
            facts.start()
            PodSweeper(kube, lambda s: None, namespaces=watched).sweep()
            # the heartbeat (issue 13) reads the cluster's identity once: kube-system's uid (a
            # namespaced install is refused it, and beats without one)
            Heartbeat(MemoryStore(), cluster="rbac", owner="a", interval=15.0,
                      open_incidents=lambda: 0, last_watch_event_at=lambda: None,
                      uid=functools.partial(cluster_uid, kube)).run()
            assert view.wait_synced(5)
            assert facts.wait_synced(5)
            for pod in view.failing()[:1]:
                view.refresh(pod.namespace, pod.name)
            time.sleep(0.4)
            for watcher in watchers:
                watcher.stop()
            view.stop()
            facts.stop()
            assert not [w.what for w in facts.secrets + facts.accounts if w.refused]
            assert bool(facts.secrets) == settings.read_secrets
            remediated += remediate_everything(kube, settings, scenario.objects)
            if not settings.remediation_enabled:
                assert sim.requests_matching("PATCH") == []
                assert sim.requests_matching("DELETE") == []
            used |= set(sim.access_log)
            denied += sim.denied
    capsys.readouterr()
    # a Role cannot grant cluster-scoped reads: the namespaced install is refused a node once
    # per client, the audit's namespace labels once per run, and the bundle's webhook lists,
    # and says so
    allowed = {NODE_READ, NAMESPACE_READ, *WEBHOOK_LISTS} if profile == "namespaced" else set()
    assert set(denied) <= allowed, f"{profile}: the code needs more than it grants: {denied}"
    unused = all_granted(grant) - used
    assert unused == set(), f"{profile} grants what the code never uses: {unused}"
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "CronJob", "ReplicaSet", "Job", "Pod"}
    assert kinds <= {line.split()[0] for line in remediated}, remediated
    findings = {f for out in outputs for d in out["diagnoses"] for f in d["findings"]}
    assert ("secrets_not_read" in findings) == (not settings.read_secrets)
    if not settings.read_secrets:
        assert not [a for a in used if a[2] == "secrets"]
    # every bundle is whole or says in words what this profile may not read
    assert bundles
    for bundle in bundles:
        if profile == "namespaced":
            assert bundle["webhooks"] is None and "webhooks" in bundle["unavailable"]
            assert bundle["node"] is None and "node" in bundle["unavailable"]
        else:
            assert bundle["webhooks"] is not None and bundle["node"] is not None
        if not settings.read_secrets:
            assert all(s["usernames"] == [] and s["exists"] is None
                       for s in bundle["pull_secrets"] or [])
    rewritten = [b for b in bundles if any(c["image_rewritten"] for c in b["containers"])]
    assert rewritten, "the image-rewritten scenario's bundle shows the rewrite"


def remediate_everything(kube: KubeClient, settings: Settings,
                         objects: list[dict[str, Any]]) -> list[str]:
    """Every remediation on every workload of a scenario, as people run it: asked for, then
    approved (the approval service posts to the Slack stand-in); a read-only install refuses
    at the request, in words. What was done, for the test."""
    with SlackStandIn() as slack_server:
        slack = WebClient(token=slack_server.token, base_url=slack_server.api_url)
        approvals = ApprovalService(MemoryStore(), kube, slack, Approvers(["U0APPROVER"], slack),
                                    allowed_namespaces=settings.watch_namespaces or None,
                                    remediation_enabled=settings.remediation_enabled)
        done = [line for obj in objects
                if (line := _remediate(approvals, settings, obj)) is not None]
        pods = [obj for obj in objects if obj["kind"] == "Pod" and (
            not settings.watch_namespaces
            or obj["metadata"].get("namespace") in settings.watch_namespaces)]
        if pods:  # after everything else: it deletes the pod
            done.append(_retry_pod(approvals, settings, pods[0]))
        return done


def _retry_pod(approvals: ApprovalService, settings: Settings, pod: dict[str, Any]) -> str:
    """"Retry now" of a pod (the bare-pod case of issue 12: a DELETE), asked for and approved;
    read-only refuses it in words, with the command to run."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    if not settings.remediation_enabled:
        with pytest.raises(RemediationRefused, match=r"this install is read-only.*"
                           r"run the command yourself: kubectl delete pod "):
            approvals.request("retry", namespace, "Pod", name, "U0ASKER", "imagepull-alerts")
        return f"Pod {namespace}/{name}"
    request, _ = approvals.request("retry", namespace, "Pod", name, "U0ASKER",
                                   "imagepull-alerts")
    decision = approvals.decide(request.id, "U0APPROVER", approve=True)
    assert decision.ok, decision.message
    return f"Pod {namespace}/{name}"


def _remediate(approvals: ApprovalService, settings: Settings,
               obj: dict[str, Any]) -> str | None:
    kind, meta = obj["kind"], obj["metadata"]
    namespace, name = meta.get("namespace", ""), meta["name"]
    if settings.watch_namespaces and namespace not in settings.watch_namespaces:
        return None
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob"):
        template = obj["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else obj["spec"]
        container = template["template"]["spec"]["containers"][0]["name"]
        requests = [("set_image", container, "registry.internal/fixed/app:1")]
        if kind != "CronJob":
            requests.append(("rollout_restart", "", ""))
        for action, cont, image in requests:
            if not settings.remediation_enabled:
                with pytest.raises(RemediationRefused, match=r"this install is read-only.*"
                                   r"run the command yourself: kubectl "):
                    approvals.request(action, namespace, kind, name, "U0ASKER",
                                      "imagepull-alerts", container=cont, image=image)
                continue
            request, _ = approvals.request(action, namespace, kind, name, "U0ASKER",
                                           "imagepull-alerts", container=cont, image=image)
            decision = approvals.decide(request.id, "U0APPROVER", approve=True)
            assert decision.ok, decision.message
        return f"{kind} {namespace}/{name}"
    if kind in ("ReplicaSet", "Job"):  # refused, after reading the owner to name it
        if settings.remediation_enabled:
            with pytest.raises(RemediationRefused, match=r"(deployment|cronjob)/"):
                set_image(approvals.kube, namespace, kind, name, "app",
                          "registry.internal/fixed/app:1")
        return f"{kind} {namespace}/{name}"
    return None


def test_a_namespaced_install_asks_for_a_node_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Roles cannot grant nodes: the first refusal is one warning, later diagnoses skip the
    node checks without asking (no error loop) and still diagnose."""
    grant = grants(render("namespaced"))
    objects = [obj for name in ("web", "api", "worker") for obj in factory.failing_deployment(
        "shop", name, f"registry.internal/shop/{name}:v3",
        factory.containerd_error("not_found", f"registry.internal/shop/{name}:v3"))]
    with SimCluster() as sim:
        for obj in objects:
            sim.apply(obj)
        sim.enforce_rbac(grant.cluster, grant.namespaced)
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        pods = [o["metadata"]["name"] for o in objects if o["kind"] == "Pod"]
        with caplog.at_level(logging.WARNING, logger="bot.kube.client"):
            facts = [kube.pod_facts("shop", pod) for pod in pods]
        assert len(pods) == 3 and all(f.node is None for f in facts)
        assert [d for d in sim.denied] == [NODE_READ]
        warnings = [r.getMessage() for r in caplog.records if "nodes cannot be read" in
                    r.getMessage()]
        assert len(warnings) == 1 and "namespaced install" in warnings[0]


@pytest.fixture
def alerting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with SimCluster() as sim, SlackStandIn() as slack, redis_store() as store:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, value in {
            "KUBECONFIG": str(kubeconfig), "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": "test-signing-secret", "SLACK_API_URL": slack.api_url,
            "SLACK_ALERT_CHANNEL": "#imagepull-alerts", "GROUP_WAIT_SECONDS": "0.5",
            "SWEEP_INTERVAL_SECONDS": "1", "REGISTRY_PROBE": "false",
        }.items():
            monkeypatch.setenv(name, value)
        yield {"sim": sim, "slack": slack, "store": store, "kubeconfig": kubeconfig,
               "monkeypatch": monkeypatch}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("profile", ["read-only", "http"])
def test_read_only_alerts_have_no_remediation_buttons(
        alerting: dict[str, Any], profile: str) -> None:
    """The whole bot, configured and granted as the profile, posts its alert for a bad tag on
    a Deployment: with read-only it carries no Rollout restart / Set image button (and the
    http profile's does, so this test can fail)."""
    sim, slack = alerting["sim"], alerting["slack"]
    docs = render(profile)
    for name, value in config(docs).items():
        if name not in ("CLUSTER_NAME", "SLACK_ALERT_CHANNEL"):
            alerting["monkeypatch"].setenv(name, value)
    alerting["monkeypatch"].setenv("CLUSTER_NAME", f"rbac-{profile}")
    grant = grants(docs)
    image = "registry.internal/shop/web:v3"
    for obj in factory.failing_deployment("shop", "web", image,
                                          factory.containerd_error("not_found", image)):
        sim.apply(obj)
    sim.enforce_rbac(grant.cluster, grant.namespaced)
    settings = load_settings()
    kube = KubeClient.from_environment(str(alerting["kubeconfig"]),
                                       read_secrets=settings.read_secrets)
    runtime = build_runtime(settings, kube=kube, store=alerting["store"])
    for watcher in runtime.watchers:
        watcher.idle_timeout = 0.5
    runtime.start()
    try:
        wait_for(lambda: slack.channel_history("imagepull-alerts"), what="the root message")
    finally:
        runtime.stop()
    [root] = slack.channel_history("imagepull-alerts")
    buttons = {e["action_id"] for b in root.blocks if b["type"] == "actions"
               for e in b["elements"]}
    remediation = {actions.RESTART, actions.SET_IMAGE} & buttons
    if profile == "read-only":
        assert remediation == set(), buttons
        assert "kubectl set image deployment/web" in str(root.blocks)  # the fix, to run
    else:
        assert actions.RESTART in remediation
    assert sim.denied == []
