"""Every install profile renders with `kubectl kustomize`, validates against the Kubernetes
JSON schemas offline (the `kubernetes-validate` package bundles them; no network), and keeps
its promise: read-only has no write verb, no-secrets no rule on secrets, namespaced no
cluster-wide grant; Redis is behind AUTH and a NetworkPolicy; the bot runs as non-root on a
read-only root filesystem.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from tests.support.profiles import BUNDLED_REDIS, PROFILES, config, grants, render

#: the Kubernetes version the manifests are checked against (kubernetes-validate bundles the
#: schemas of 1.25 to 1.37; 1.32 is the oldest minor still supported upstream as of writing)
KUBERNETES_VERSION = "1.32"
CLUSTER_SCOPED = {"nodes", "namespaces", "mutatingwebhookconfigurations",
                  "validatingwebhookconfigurations"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def _kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in ("Role", "ClusterRole") for r in d.get("rules") or []]


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_renders_and_validates_against_the_kubernetes_schemas(profile: str) -> None:
    docs = render(profile)
    assert docs, f"{profile} renders nothing"
    problems = []
    for doc in docs:
        try:  # strict: a misspelled or misplaced field fails too
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at "
                            f"{'/'.join(str(p) for p in exc.path)}")
    assert problems == []


def test_the_validator_is_offline_and_refuses_a_broken_manifest() -> None:
    """The check above can fail: a Deployment with a misplaced field is refused."""
    deployment = _one(render("http"), "Deployment", "imagepull-bot")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("profile", BUNDLED_REDIS)
def test_every_profile_locks_down_redis_and_the_bot(profile: str) -> None:
    docs = render(profile)
    policies = {d["metadata"]["name"]: d for d in _kinds(docs, "NetworkPolicy")}
    redis_policy = policies["imagepull-bot-redis"]
    assert redis_policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "imagepull-bot-redis"}
    [admitted] = redis_policy["spec"]["ingress"]
    assert admitted["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "imagepull-bot"}}}]
    assert admitted["ports"] == [{"port": 6379, "protocol": "TCP"}]
    bot_policy = policies["imagepull-bot"]
    assert set(bot_policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert [rule["ports"] for rule in bot_policy["spec"]["ingress"]] == [
        [{"port": "http", "protocol": "TCP"}]]

    redis = _one(docs, "Deployment", "imagepull-bot-redis")["spec"]["template"]["spec"]
    [server] = redis["containers"]
    assert server["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "imagepull-bot-redis", "key": "password"}}} in server["env"]

    bot = _one(docs, "Deployment", "imagepull-bot")["spec"]["template"]["spec"]
    [container] = bot["containers"]
    env = [e["name"] for e in container["env"]]
    # $(REDIS_PASSWORD) is expanded only from variables defined before it
    assert env.index("REDIS_PASSWORD") < env.index("REDIS_URL")
    url = next(e["value"] for e in container["env"] if e["name"] == "REDIS_URL")
    assert url == "redis://:$(REDIS_PASSWORD)@imagepull-bot-redis:6379/0"
    assert "REDIS_URL" not in config(docs)  # the configMap would not carry the password
    assert bot["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert not _kinds(docs, "Secret"), "no Secret in git: they are created by hand"


def test_the_agent_joins_a_shared_redis_and_bundles_none() -> None:
    """deploy/overlays/agent: no bundled Redis (no Deployment, Service or NetworkPolicy of
    it), REDIS_URL whole from the imagepull-bot-redis-url Secret, egress to the shared Redis's
    ports instead of the bundled one's pods, every role, and a CLUSTER_NAME of its own."""
    docs = render("agent")
    assert not [d for d in docs if d["metadata"]["name"] == "imagepull-bot-redis"]
    bot = _one(docs, "Deployment", "imagepull-bot")["spec"]["template"]["spec"]
    [container] = bot["containers"]
    assert {"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {
        "name": "imagepull-bot-redis-url", "key": "url"}}} in container["env"]
    assert "REDIS_PASSWORD" not in [e["name"] for e in container["env"]]
    assert "REDIS_URL" not in config(docs)
    [policy] = _kinds(docs, "NetworkPolicy")
    egress = policy["spec"]["egress"]
    assert {"ports": [{"port": 6379, "protocol": "TCP"}, {"port": 6380, "protocol": "TCP"}]
            } in egress
    assert not [rule for rule in egress for peer in rule.get("to") or []
                if "podSelector" in peer]  # no rule left for a bundled Redis's pods
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not _kinds(docs, "Secret")
    settings = config(docs)
    assert settings["CLUSTER_NAME"] not in ("", "default", "production")
    assert settings["HEARTBEAT_SECONDS"] == "15"
    assert grants(docs).cluster == grants(render("http")).cluster


@pytest.mark.parametrize("profile", PROFILES)
def test_the_configmap_says_what_the_roles_grant(profile: str) -> None:
    docs = render(profile)
    settings = config(docs)
    resources = {res for r in _rules(docs) for res in r["resources"]}
    verbs = {v for r in _rules(docs) for v in r["verbs"]}
    assert (settings["READ_SECRETS"] == "true") == ("secrets" in resources)
    assert (settings["REMEDIATION_ENABLED"] == "true") == ("patch" in verbs)


def test_read_only_has_no_write_verb_anywhere() -> None:
    docs = render("read-only")
    writes = {(tuple(r["resources"]), v) for r in _rules(docs) for v in r["verbs"]
              if v in WRITE_VERBS}
    assert writes == set()
    assert config(docs)["REMEDIATION_ENABLED"] == "false"


def test_no_secrets_has_no_rule_on_secrets() -> None:
    docs = render("no-secrets")
    assert [r for r in _rules(docs) if {"secrets", "*"} & set(r["resources"])] == []
    assert config(docs)["READ_SECRETS"] == "false"


def test_namespaced_grants_nothing_cluster_wide_and_one_role_set_per_namespace() -> None:
    docs = render("namespaced")
    assert _kinds(docs, "ClusterRole") == [] and _kinds(docs, "ClusterRoleBinding") == []
    watched = config(docs)["WATCH_NAMESPACES"].split(",")
    assert watched == ["shop", "billing"]
    granted = grants(docs)
    assert granted.cluster == []
    assert sorted(granted.namespaced) == sorted(watched)
    # the same rules in every namespace: the ones the cluster profiles grant, less the
    # cluster-scoped reads (deploy/rbac/cluster-read), which a Role cannot grant
    def key(rules: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(r, sort_keys=True) for r in rules)

    cluster_rules = grants(render("http")).cluster
    for namespace in watched:
        assert key(granted.namespaced[namespace]) == key(
            [r for r in cluster_rules if not CLUSTER_SCOPED & set(r["resources"])]), namespace


def test_the_cluster_profiles_bind_every_role_they_define() -> None:
    for profile in ("http", "socket-mode", "read-only", "no-secrets"):
        docs = render(profile)
        assert len(grants(docs).cluster) == len(_rules(docs)), profile
