"""diagnose() on what the kubelet's words leave open (issue 12): both readings of an ambiguous
text, ordered by the pod's credentials, and the findings events do not tell — a containerd or
CRI-O node that ignores /root/.docker/config.json, and a proxy the runtime lacks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import NodePull, PodFacts, PullSecretInfo, RegistryFacts
from bot.diagnosis.imageref import is_external_registry
from bot.diagnosis.model import ContainerDiagnosis
from tests.diagnosis.kubelet import NOW, pod, pull_failure

BLOCKED_HEAD = ('rpc error: code = Unknown desc = failed to pull and unpack image '
                '"registry.k8s.io/sig-storage/livenessprobe:v2.9.0": failed to resolve reference '
                '"registry.k8s.io/sig-storage/livenessprobe:v2.9.0": unexpected status from HEAD '
                'request to https://registry.k8s.io/v2/sig-storage/livenessprobe/manifests/'
                'v2.9.0: 403 Forbidden')
PROBE_IMAGE = "registry.k8s.io/sig-storage/livenessprobe:v2.9.0"
UNAUTHORIZED = ('rpc error: code = Unknown desc = failed to pull and unpack image '
                '"registry.example.com/team/billing:v2.1": failed to resolve reference '
                '"registry.example.com/team/billing:v2.1": unexpected status from HEAD request '
                'to https://registry.example.com/v2/team/billing/manifests/v2.1: 401 '
                'Unauthorized')
BILLING = "registry.example.com/team/billing:v2.1"
HUB_DENIED = ('rpc error: code = Unknown desc = failed to pull and unpack image '
              '"docker.io/acme/private-api:1.4": failed to resolve reference '
              '"docker.io/acme/private-api:1.4": pull access denied, repository does not exist '
              'or may require authorization: server message: insufficient_scope: authorization '
              'failed')
TIMEOUT = ('rpc error: code = Unknown desc = failed to pull and unpack image '
           '"docker.io/library/redis:7.2": failed to resolve reference '
           '"docker.io/library/redis:7.2": failed to do request: Head '
           '"https://registry-1.docker.io/v2/library/redis/manifests/7.2": dial tcp '
           '54.236.113.205:443: i/o timeout')
REDIS = "redis:7.2"


def node(runtime: str = "containerd://1.7.22") -> dict[str, Any]:
    """The node as bot/kube/client.py keeps it (name, conditions, images, nodeInfo)."""
    return {"metadata": {"name": "worker-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"containerRuntimeVersion": runtime,
                                    "kubeletVersion": "v1.31.2", "operatingSystem": "linux",
                                    "architecture": "amd64"}}}


def only(facts: PodFacts) -> ContainerDiagnosis:
    [d] = diagnose(facts).diagnoses
    return d


def facts_for(image: str, error: str, *, pull_secrets: tuple[str, ...] = (),
              **kw: Any) -> PodFacts:
    return PodFacts(pod=pod(image, pull_secrets=pull_secrets),
                    events=pull_failure(image, error), now=NOW, **kw)


# -- two readings ------------------------------------------------------------------------------


def test_a_reasonless_403_without_credentials_reads_as_an_address_block_first() -> None:
    d = only(facts_for(PROBE_IMAGE, BLOCKED_HEAD, referenced_secrets={},
                       namespace_pull_secrets=[]))
    assert d.cause is Cause.IP_BLOCKED
    assert [a.cause for a in d.alternatives] == [Cause.AUTH_REQUIRED]
    # the summary says both readings and how to tell them apart
    assert "refuses requests from the node's network" in d.summary
    assert " Or: the image is private and the registry wants credentials" in d.summary
    commands = [f.command for f in d.fixes]
    assert ("curl -sI https://registry.k8s.io/v2/sig-storage/livenessprobe/manifests/v2.9.0"
            in commands)
    other = [f for f in d.fixes if f.title.startswith("If it is rather registry credentials")]
    assert other and "docker-registry" in other[0].command
    assert Finding.NO_PULL_SECRET not in d.findings  # not a credentials diagnosis


def test_a_reasonless_403_with_credentials_reads_as_missing_permission_first() -> None:
    secret = PullSecretInfo("k8s-creds", "kubernetes.io/dockerconfigjson", ("registry.k8s.io",))
    d = only(facts_for(PROBE_IMAGE, BLOCKED_HEAD, pull_secrets=("k8s-creds",),
                       referenced_secrets={"k8s-creds": secret},
                       namespace_pull_secrets=[secret]))
    assert d.cause is Cause.FORBIDDEN
    assert [a.cause for a in d.alternatives] == [Cause.IP_BLOCKED]
    assert "Or: the registry (or a CDN in front of it) blocks the node's address" in d.summary
    assert any(f.title.startswith("If it is rather registry refuses the node's address")
               and f.command.startswith("curl -sI https://registry.k8s.io/v2/") for f in d.fixes)


def test_a_page_from_the_registrys_front_reads_as_a_block_even_with_credentials() -> None:
    page = ("error pulling image configuration: download failed after attempts=1: error "
            "parsing HTTP 403 response body: invalid character '<' looking for beginning of "
            'value: "<html><head><title>403 Forbidden</title></head></html>"')
    secret = PullSecretInfo("k8s-creds", "kubernetes.io/dockerconfigjson", ("registry.k8s.io",))
    d = only(facts_for(PROBE_IMAGE, page, pull_secrets=("k8s-creds",),
                       referenced_secrets={"k8s-creds": secret},
                       namespace_pull_secrets=[secret]))
    assert (d.cause, [a.cause for a in d.alternatives]) == (Cause.IP_BLOCKED, [Cause.FORBIDDEN])
    d = only(facts_for(PROBE_IMAGE, page, referenced_secrets={}, namespace_pull_secrets=[]))
    assert (d.cause, [a.cause for a in d.alternatives]) == (Cause.IP_BLOCKED,
                                                           [Cause.AUTH_REQUIRED])


def test_the_pods_credentials_pulling_from_the_bots_network_settle_it_as_a_block() -> None:
    secret = PullSecretInfo("k8s-creds", "kubernetes.io/dockerconfigjson", ("registry.k8s.io",))
    kw: dict[str, Any] = {"pull_secrets": ("k8s-creds",),
                          "referenced_secrets": {"k8s-creds": secret},
                          "namespace_pull_secrets": [secret]}
    pulls_fine = RegistryFacts(probe_summary="HEAD manifests/v2.9.0 with k8s-creds: 200",
                               repository_exists=True, digest="sha256:" + "ab" * 32)
    d = only(facts_for(PROBE_IMAGE, BLOCKED_HEAD, registry={PROBE_IMAGE: pulls_fine}, **kw))
    assert (d.cause, d.alternatives) == (Cause.IP_BLOCKED, ())
    # refused from the bot's network too: still both readings
    refused = RegistryFacts(probe_cause=Cause.FORBIDDEN, probe_summary="HEAD …: 403")
    d = only(facts_for(PROBE_IMAGE, BLOCKED_HEAD, registry={PROBE_IMAGE: refused}, **kw))
    assert (d.cause, [a.cause for a in d.alternatives]) == (Cause.FORBIDDEN, [Cause.IP_BLOCKED])


def test_without_secret_reads_a_referenced_secret_still_counts_as_credentials() -> None:
    """READ_SECRETS=false: contents unknown, but the pod names a secret: it sends some."""
    d = only(facts_for(PROBE_IMAGE, BLOCKED_HEAD, pull_secrets=("k8s-creds",),
                       secrets_read=False))
    assert d.cause is Cause.FORBIDDEN
    assert [a.cause for a in d.alternatives] == [Cause.IP_BLOCKED]


def test_docker_hubs_denial_names_the_reading_it_did_not_pick() -> None:
    d = only(facts_for("acme/private-api:1.4", HUB_DENIED, referenced_secrets={},
                       namespace_pull_secrets=[]))
    assert d.cause is Cause.AUTH_REQUIRED
    assert [a.cause for a in d.alternatives] == [Cause.REPOSITORY_NOT_FOUND]
    assert "Or: the repository path does not exist" in d.summary


def test_the_registrys_answer_settles_what_the_words_left_open() -> None:
    registry = {"acme/private-api:1.4": RegistryFacts(probe_cause=Cause.REPOSITORY_NOT_FOUND,
                                                      repository_exists=False)}
    d = only(facts_for("acme/private-api:1.4", HUB_DENIED, referenced_secrets={},
                       namespace_pull_secrets=[], registry=registry))
    assert d.cause is Cause.REPOSITORY_NOT_FOUND
    assert d.alternatives == ()
    assert " Or: " not in d.summary


def test_alternatives_travel_in_the_json_contract_and_back() -> None:
    d = only(facts_for(PROBE_IMAGE, BLOCKED_HEAD, referenced_secrets={},
                       namespace_pull_secrets=[]))
    data = json.loads(json.dumps(d.to_json()))
    assert data["alternatives"] == [{"cause": "auth_required",
                                     "how_to_tell": d.alternatives[0].how_to_tell}]
    assert ContainerDiagnosis.from_json(data) == d
    # a reading this version does not know (a newer writer) is left out, not an error
    data["alternatives"].append({"cause": "some_future_cause", "how_to_tell": "x"})
    assert ContainerDiagnosis.from_json(data).alternatives == d.alternatives


def test_an_io_error_says_both_disk_readings() -> None:
    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             '"docker.io/library/postgres:16": failed to extract layer sha256:'
             + "ab" * 32 + ': write /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/'
             'snapshots/51/fs/usr/lib/postgresql/16/bin/postgres: input/output error: unknown')
    d = only(facts_for("postgres:16", error))
    assert d.cause is Cause.NODE_DISK_ERROR
    assert [a.cause for a in d.alternatives] == [Cause.DISK_FULL]
    assert "df and lvs show it full" in d.summary
    commands = "\n".join(f.command for f in d.fixes)
    assert "dmesg" in commands and "df -h /var/lib/containerd" in commands
    assert "kubectl cordon worker-1" in commands


# -- node_runtime_ignores_docker_config ----------------------------------------------------------


def test_a_containerd_node_with_an_auth_failure_and_no_pull_secret_is_told_why() -> None:
    d = only(facts_for(BILLING, UNAUTHORIZED, referenced_secrets={},
                       namespace_pull_secrets=[], node=node("containerd://1.7.22")))
    assert d.cause is Cause.AUTH_REQUIRED
    assert Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG in d.findings
    commands = [f.command for f in d.fixes]
    # the pull secret first (the fix that always works), then the node's own checks
    assert commands[0].startswith("kubectl create secret docker-registry regcred")
    check = next(f for f in d.fixes if "containerRuntimeVersion" in f.command)
    assert "/root/.docker/config.json" in check.title and "dockershim" in check.title
    assert check.command == ("kubectl get node worker-1 -o "
                             "'jsonpath={.status.nodeInfo.containerRuntimeVersion}'")
    hosts = next(f for f in d.fixes if "hosts.toml" in f.command)
    assert "/etc/containerd/certs.d/registry.example.com/hosts.toml" in hosts.command
    assert 'Authorization = "Basic <base64 of username:token>"' in hosts.command


def test_a_cri_o_node_gets_cri_os_node_wide_way() -> None:
    d = only(facts_for(BILLING, UNAUTHORIZED, referenced_secrets={},
                       namespace_pull_secrets=[], node=node("cri-o://1.30.4")))
    assert Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG in d.findings
    assert any("global_auth_file" in f.command for f in d.fixes)
    assert not any("hosts.toml" in f.command for f in d.fixes)


@pytest.mark.parametrize(("runtime", "secrets"), [
    ("docker://24.0.7", ()),  # cri-dockerd: the Docker daemon does read its config
    ("containerd://1.7.22", ("regcred",)),  # it has a pull secret: that is what to look at
    (None, ()),  # the node could not be read: no evidence, no finding
])
def test_no_docker_config_finding_without_the_evidence(runtime: str | None,
                                                       secrets: tuple[str, ...]) -> None:
    present = {s: PullSecretInfo(s, "kubernetes.io/dockerconfigjson", ("registry.example.com",))
               for s in secrets}
    d = only(facts_for(BILLING, UNAUTHORIZED, pull_secrets=secrets, referenced_secrets=present,
                       namespace_pull_secrets=list(present.values()),
                       node=node(runtime) if runtime else None))
    assert Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG not in d.findings
    assert not any("containerRuntimeVersion" in f.command for f in d.fixes)


def test_no_docker_config_finding_for_a_cause_that_is_not_about_credentials() -> None:
    d = only(facts_for(REDIS, TIMEOUT, node=node()))
    assert Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG not in d.findings


# -- proxy_suspected ---------------------------------------------------------------------------


def pulls(*images: str) -> list[NodePull]:
    return [NodePull(image, f"shop/other-{i}", NOW - timedelta(minutes=3 + i))
            for i, image in enumerate(images)]


def test_other_registries_pulling_from_the_same_node_point_at_the_proxy() -> None:
    d = only(facts_for(REDIS, TIMEOUT, node=node(),
                       node_pulls=pulls("ghcr.io/acme/worker:3.1", "quay.io/prometheus/node:1",
                                        "docker.io/library/nginx:1.27")))
    assert d.cause is Cause.NETWORK_UNREACHABLE
    assert Finding.PROXY_SUSPECTED in d.findings
    # the evidence is said: which other pulls worked on this node, and when
    assert "node: the same node pulled ghcr.io/acme/worker:3.1 from ghcr.io for pod " \
           "shop/other-0 at 14:57:00 UTC" in d.evidence
    assert any(e.startswith("node: the same node pulled quay.io/prometheus/node:1")
               for e in d.evidence)
    assert not any("nginx" in e for e in d.evidence)  # same registry: no evidence
    # the guide's fix first: what the runtime runs with, then the unit's proxy settings
    assert d.fixes[0].command == "systemctl show containerd --property=Environment"
    assert "NO_PROXY catches registry-1.docker.io" in d.fixes[0].title
    assert "HTTPS_PROXY=http://<proxy>:3128" in d.fixes[1].command
    assert "NO_PROXY=10.0.0.0/8,192.168.0.0/16,.cluster.local" in d.fixes[1].command


def test_a_cri_o_node_gets_the_crio_unit() -> None:
    d = only(facts_for(REDIS, TIMEOUT, node=node("cri-o://1.30.4"),
                       node_pulls=pulls("ghcr.io/acme/worker:3.1")))
    assert d.fixes[0].command == "systemctl show crio --property=Environment"


@pytest.mark.parametrize("node_pulls", [
    None,  # nobody watched the node's pulls (offline, the CLI): no evidence, no finding
    [],  # watched, and the node pulled nothing else
    pulls("docker.io/library/nginx:1.27", "redis:7.0"),  # only the failing registry itself
])
def test_no_proxy_finding_without_the_evidence(node_pulls: list[NodePull] | None) -> None:
    d = only(facts_for(REDIS, TIMEOUT, node=node(), node_pulls=node_pulls))
    assert Finding.PROXY_SUSPECTED not in d.findings
    assert not any(e.startswith("node: ") for e in d.evidence)


def test_no_proxy_finding_for_an_internal_registry_or_a_non_network_cause() -> None:
    internal = "registry.svc.cluster.local:5000/team/app:1"
    error = TIMEOUT.replace("docker.io/library/redis:7.2", internal)
    d = only(facts_for(internal, error, node=node(), node_pulls=pulls("ghcr.io/a/b:1")))
    assert d.cause is Cause.NETWORK_UNREACHABLE
    assert Finding.PROXY_SUSPECTED not in d.findings
    d = only(facts_for(BILLING, UNAUTHORIZED, node=node(), node_pulls=pulls("ghcr.io/a/b:1")))
    assert Finding.PROXY_SUSPECTED not in d.findings


@pytest.mark.parametrize(("registry", "external"), [
    ("docker.io", True), ("ghcr.io", True), ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", True),
    ("registry.internal", False), ("harbor.svc.cluster.local", False), ("localhost:5000", False),
    ("10.1.2.3:5000", False), ("[fd00::1]:5000", False), ("registry", False),
    ("8.8.8.8", True),
])
def test_is_external_registry(registry: str, external: bool) -> None:
    assert is_external_registry(registry) is external


def test_a_hostile_pod_name_from_an_event_cannot_write_markup_into_the_summary() -> None:
    hostile = [NodePull("ghcr.io/acme/worker:3.1", "shop/x`<!channel>`\nEvil", NOW)]
    d = only(facts_for(REDIS, TIMEOUT, node=node(), node_pulls=hostile))
    assert Finding.PROXY_SUSPECTED in d.findings
    assert "`" not in d.summary and "\n" not in d.summary
