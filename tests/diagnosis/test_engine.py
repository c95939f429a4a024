"""diagnose() end to end on realistic pods and kubelet event sequences (no server)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose, estimate_backoff
from bot.diagnosis.events import read_event
from bot.diagnosis.facts import PodFacts, PullSecretInfo, WorkloadRef
from bot.diagnosis.model import ContainerDiagnosis
from tests.diagnosis.kubelet import NOW, event, pod, pull_failure

NOT_FOUND = ('rpc error: code = NotFound desc = failed to pull and unpack image '
             '"docker.io/library/nginx:lates": failed to resolve reference '
             '"docker.io/library/nginx:lates": docker.io/library/nginx:lates: not found')
UNAUTHORIZED = ('rpc error: code = Unknown desc = failed to pull and unpack image '
                '"registry.internal/team/billing:v2.1": failed to resolve reference '
                '"registry.internal/team/billing:v2.1": failed to authorize: failed to fetch '
                'anonymous token: unexpected status from GET request to '
                'https://registry.internal/token?scope=repository%3Ateam%2Fbilling%3Apull'
                '&service=registry.internal: 401 Unauthorized')
HUB_DENIED = ('rpc error: code = Unknown desc = failed to pull and unpack image '
              '"docker.io/acme/private-api:1.4": failed to resolve reference '
              '"docker.io/acme/private-api:1.4": pull access denied, repository does not exist '
              'or may require authorization: server message: insufficient_scope: authorization '
              'failed')


def only(facts: PodFacts) -> ContainerDiagnosis:
    result = diagnose(facts)
    assert len(result.diagnoses) == 1, result
    return result.diagnoses[0]


def facts_for(image: str, error: str, **kw: Any) -> PodFacts:
    pod_kw = {k: kw.pop(k) for k in list(kw) if k in {"pull_secrets", "pull_policy", "owner",
                                                      "template_hash", "name"}}
    return PodFacts(pod=pod(image, **pod_kw), events=pull_failure(image, error), now=NOW, **kw)


def test_tag_not_found_names_the_deployment_and_the_exact_command() -> None:
    d = only(facts_for("nginx:lates", NOT_FOUND))
    assert d.cause is Cause.TAG_NOT_FOUND
    assert d.workload == WorkloadRef("Deployment", "web")
    assert not d.transient
    assert d.evidence[0].startswith('Failed to pull image "nginx:lates"')
    commands = [f.command for f in d.fixes]
    assert "kubectl set image deployment/web 'web=nginx:<tag>' -n shop" in commands
    assert all("replicaset" not in c.lower() for c in commands)


def test_crash_loop_back_off_is_not_a_pull_problem() -> None:
    crash = pod("nginx:1.27", waiting_reason="CrashLoopBackOff",
                waiting_message="back-off 5m0s restarting failed container=web pod=web_shop")
    events = [event("BackOff", "Back-off restarting failed container web in pod "
                    "web-7d9f8b6c5d-x2x9q_shop(uid)", count=40),
              event("Pulled", 'Container image "nginx:1.27" already present on machine',
                    type_="Normal")]
    assert diagnose(PodFacts(pod=crash, events=events, now=NOW)).diagnoses == ()


def test_running_pod_has_no_diagnosis_even_with_old_failures() -> None:
    healthy = pod("nginx:1.27", waiting_reason=None)
    events = [*pull_failure("nginx:1.27", NOT_FOUND, last_ago=600),
              event("Pulled", 'Successfully pulled image "nginx:1.27" in 2.1s', type_="Normal",
                    last_ago=30)]
    assert diagnose(PodFacts(pod=healthy, events=events, now=NOW)).diagnoses == ()


def test_bare_back_off_with_expired_events_is_unknown_not_guessed() -> None:
    p = pod("registry.internal/team/api:2.0")
    events = [event("BackOff", 'Back-off pulling image "registry.internal/team/api:2.0"',
                    type_="Normal", count=30)]
    d = only(PodFacts(pod=p, events=events, now=NOW))
    assert d.cause is Cause.UNKNOWN
    assert any("crictl" in f.command for f in d.fixes)


def test_waiting_message_alone_is_enough_newer_kubelet_wording() -> None:
    message = f'Back-off pulling image "nginx:lates": ErrImagePull: {NOT_FOUND}'
    p = pod("nginx:lates", waiting_message=message)
    assert only(PodFacts(pod=p, events=[], now=NOW)).cause is Cause.TAG_NOT_FOUND


def test_err_image_pull_waiting_message_from_containerd() -> None:
    p = pod("nginx:lates", waiting_reason="ErrImagePull", waiting_message=NOT_FOUND)
    assert only(PodFacts(pod=p, now=NOW)).cause is Cause.TAG_NOT_FOUND


def test_docker_hub_denial_without_secret_is_auth_required() -> None:
    d = only(facts_for("acme/private-api:1.4", HUB_DENIED))
    assert d.cause is Cause.AUTH_REQUIRED
    assert Finding.NO_PULL_SECRET in d.findings
    create = next(f.command for f in d.fixes if "create secret" in f.command)
    assert "--docker-server=https://index.docker.io/v1/" in create
    assert "-n shop" in create


def test_docker_hub_denial_with_a_hub_secret_is_repository_not_found() -> None:
    hub = PullSecretInfo("hubcred", "kubernetes.io/dockerconfigjson",
                         ("https://index.docker.io/v1/",))
    d = only(facts_for("acme/private-api:1.4", HUB_DENIED, pull_secrets=("hubcred",),
                       referenced_secrets={"hubcred": hub}))
    assert d.cause is Cause.REPOSITORY_NOT_FOUND


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io",
                                 "registry-1.docker.io", "https://registry.hub.docker.com"])
def test_every_docker_hub_spelling_counts_as_a_hub_secret(key: str) -> None:
    hub = PullSecretInfo("hubcred", "kubernetes.io/dockerconfigjson", (key,))
    d = only(facts_for("acme/private-api:1.4", HUB_DENIED, pull_secrets=("hubcred",),
                       referenced_secrets={"hubcred": hub}))
    assert d.cause is Cause.REPOSITORY_NOT_FOUND
    assert Finding.PULL_SECRET_WRONG_REGISTRY not in d.findings


def test_unauthorized_without_secret_suggests_secret_and_service_account_patch() -> None:
    d = only(facts_for("registry.internal/team/billing:v2.1", UNAUTHORIZED,
                       referenced_secrets={}, namespace_pull_secrets=[],
                       service_account_pull_secrets=()))
    assert d.cause is Cause.AUTH_REQUIRED
    assert d.findings == (Finding.NO_PULL_SECRET,)
    commands = [f.command for f in d.fixes]
    assert ("kubectl create secret docker-registry regcred --docker-server=registry.internal "
            "--docker-username='<username>' --docker-password='<token>' -n shop") in commands
    assert ("kubectl patch serviceaccount default -p "
            "'{\"imagePullSecrets\": [{\"name\": \"regcred\"}]}' -n shop") in commands
    assert "kubectl rollout restart deployment/web -n shop" in commands


def test_service_account_patch_keeps_the_secrets_it_already_has() -> None:
    d = only(facts_for("registry.internal/team/billing:v2.1", UNAUTHORIZED,
                       referenced_secrets={}, namespace_pull_secrets=[],
                       service_account_pull_secrets=("other",)))
    patch = next(f.command for f in d.fixes if "patch serviceaccount" in f.command)
    assert '[{"name": "other"}, {"name": "regcred"}]' in patch


def test_referenced_secret_absent_from_namespace() -> None:
    d = only(facts_for("registry.internal/team/billing:v2.1", UNAUTHORIZED,
                       pull_secrets=("regcred",), referenced_secrets={"regcred": None}))
    assert Finding.PULL_SECRET_MISSING in d.findings
    assert Finding.NO_PULL_SECRET not in d.findings
    assert d.fixes[0].command.startswith("kubectl create secret docker-registry regcred ")
    assert "namespace-scoped" in d.fixes[0].title


def test_missing_secret_found_offline_from_the_kubelet_warning() -> None:
    image = "registry.internal/team/billing:v2.1"
    events = [*pull_failure(image, UNAUTHORIZED),
              event("FailedToRetrieveImagePullSecret", "Unable to retrieve some image pull "
                    "secrets (regcred); attempting to pull the image may not succeed.",
                    container=None)]
    p = pod(image, pull_secrets=("regcred",))
    d = only(PodFacts(pod=p, events=events, now=NOW))
    assert Finding.PULL_SECRET_MISSING in d.findings


def test_secret_for_the_wrong_registry() -> None:
    wrong = PullSecretInfo("regcred", "kubernetes.io/dockerconfigjson", ("registry.example.com",))
    d = only(facts_for("registry.internal/team/billing:v2.1", UNAUTHORIZED,
                       pull_secrets=("regcred",), referenced_secrets={"regcred": wrong}))
    assert Finding.PULL_SECRET_WRONG_REGISTRY in d.findings
    rewrite = next(f.command for f in d.fixes if "--dry-run=client" in f.command)
    assert "--docker-server=registry.internal" in rewrite
    assert rewrite.endswith("| kubectl apply -f -")


def test_fitting_secret_exists_but_nobody_references_it() -> None:
    fitting = PullSecretInfo("regcred", "kubernetes.io/dockerconfigjson", ("registry.internal",))
    d = only(facts_for("registry.internal/team/billing:v2.1", UNAUTHORIZED,
                       referenced_secrets={}, namespace_pull_secrets=[fitting],
                       service_account_pull_secrets=()))
    assert Finding.PULL_SECRET_NOT_REFERENCED in d.findings
    assert d.fixes[0].command == ("kubectl patch serviceaccount default -p "
                                  "'{\"imagePullSecrets\": [{\"name\": \"regcred\"}]}' -n shop")


def test_ecr_secret_older_than_twelve_hours() -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/cart:5.0"
    error = (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
             f'failed to resolve reference "{image}": pull access denied, repository does not '
             'exist or may require authorization: authorization failed: no basic auth '
             'credentials')
    ecr = PullSecretInfo("ecr-pull", "kubernetes.io/dockerconfigjson",
                         ("123456789012.dkr.ecr.us-east-1.amazonaws.com",),
                         updated_at=NOW - timedelta(hours=20))
    d = only(facts_for(image, error, pull_secrets=("ecr-pull",),
                       referenced_secrets={"ecr-pull": ecr}))
    assert d.cause in (Cause.AUTH_REQUIRED, Cause.REPOSITORY_NOT_FOUND)
    if d.cause is Cause.AUTH_REQUIRED:
        assert Finding.ECR_TOKEN_EXPIRED in d.findings
        assert Finding.CLOUD_REGISTRY_CREDENTIALS in d.findings


def test_ecr_unauthorized_with_old_secret_is_expired_token() -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/cart:5.0"
    error = (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
             f'failed to resolve reference "{image}": unexpected status from HEAD request to '
             'https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/shop/cart/manifests/5.0: '
             '401 Unauthorized')
    for age, expired in ((timedelta(hours=20), True), (timedelta(hours=2), False)):
        ecr = PullSecretInfo("ecr-pull", "kubernetes.io/dockerconfigjson",
                             ("https://123456789012.dkr.ecr.us-east-1.amazonaws.com",),
                             updated_at=NOW - age)
        d = only(facts_for(image, error, pull_secrets=("ecr-pull",),
                           referenced_secrets={"ecr-pull": ecr}))
        assert d.cause is Cause.AUTH_REQUIRED
        assert (Finding.ECR_TOKEN_EXPIRED in d.findings) is expired
        assert Finding.CLOUD_REGISTRY_CREDENTIALS in d.findings
        assert any("CredentialProviderConfig" in f.command
                   and "ecr-credential-provider" in f.command for f in d.fixes)
    refresh = next(f.command for f in d.fixes if "get-login-password" in f.command)
    assert "--docker-username=AWS" in refresh
    assert '--docker-password="$(aws ecr get-login-password --region us-east-1)"' in refresh


def test_ensure_secret_pulled_images_on_133_with_if_not_present_and_a_cached_image() -> None:
    image = "registry.internal/team/billing:v2.1"
    cached = {"metadata": {"name": "worker-1"}, "status": {"images": [
        {"names": ["registry.internal/team/billing@sha256:" + "a" * 64,
                   "registry.internal/team/billing:v2.1"], "sizeBytes": 48213377}]}}
    for version, expected in (("v1.33.2", True), ("v1.32.9-eks-1", False), (None, False)):
        d = only(facts_for(image, UNAUTHORIZED, cluster_version=version, referenced_secrets={},
                           node=cached))
        assert (Finding.ENSURE_SECRET_PULLED_IMAGES in d.findings) is expected, version
    d = only(facts_for(image, UNAUTHORIZED, cluster_version="v1.33.2", pull_policy="Always",
                       node=cached))
    assert Finding.ENSURE_SECRET_PULLED_IMAGES not in d.findings
    # not cached on the node: an ordinary missing-credentials failure, not the gate
    d = only(facts_for(image, UNAUTHORIZED, cluster_version="v1.33.2",
                       node={"status": {"images": []}}))
    assert Finding.ENSURE_SECRET_PULLED_IMAGES not in d.findings


def test_implicit_latest_tag() -> None:
    error = NOT_FOUND.replace("nginx:lates", "myorg/app:latest").replace("library/", "")
    d = only(facts_for("myorg/app", error, pull_policy="Always"))
    assert Finding.IMPLICIT_LATEST_TAG in d.findings
    assert "(no tag given, so :latest)" in d.summary


def test_policy_never() -> None:
    image = "shop/local-build:dev"
    p = pod(image, pull_policy="Never", waiting_reason="ErrImageNeverPull",
            waiting_message=f'Container image "{image}" is not present with pull policy of Never')
    events = [event("ErrImageNeverPull", f'Container image "{image}" is not present with pull '
                    'policy of Never', count=12)]
    d = only(PodFacts(pod=p, events=events, now=NOW))
    assert d.cause is Cause.NEVER_PULL
    assert Finding.POLICY_NEVER in d.findings
    assert d.backoff.next_retry_seconds is None
    patch = d.fixes[0].command
    assert json.loads(patch.split(" -p ")[1].strip("'")) == {
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "imagePullPolicy": "IfNotPresent"}]}}}}


def test_node_disk_pressure_and_disk_full() -> None:
    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             '"docker.io/library/postgres:16": failed to extract layer sha256:abc: write '
             '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/81/fs/usr/lib/'
             'x: no space left on device: unknown')
    node = {"metadata": {"name": "worker-1"}, "status": {"conditions": [
        {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure"}]}}
    d = only(facts_for("postgres:16", error, node=node))
    assert d.cause is Cause.DISK_FULL
    assert Finding.NODE_DISK_PRESSURE in d.findings
    commands = [f.command for f in d.fixes]
    assert "df -h /var/lib/containerd" in commands
    assert "sudo crictl rmi --prune" in commands


def test_init_container_failure_is_reported_for_the_init_container_only() -> None:
    image = "registry.internal/shop/migrate:9"
    p = pod("nginx:1.27", waiting_reason="PodInitializing", init_image=image,
            init_waiting_reason="ImagePullBackOff")
    p["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "PodInitializing"}}
    events = pull_failure(image, NOT_FOUND.replace("docker.io/library/nginx:lates", image),
                          container="migrate", init=True)
    d = only(PodFacts(pod=p, events=events, now=NOW))
    assert (d.container, d.init_container) == ("migrate", True)
    assert d.cause is Cause.TAG_NOT_FOUND


@pytest.mark.parametrize(("owner", "hash_", "name", "expected"), [
    (("ReplicaSet", "web-7d9f8b6c5d"), "7d9f8b6c5d", "web-7d9f8b6c5d-x2x9q",
     WorkloadRef("Deployment", "web")),
    (("StatefulSet", "db"), None, "db-0", WorkloadRef("StatefulSet", "db")),
    (("DaemonSet", "agent"), None, "agent-q7x2k", WorkloadRef("DaemonSet", "agent")),
    (("Job", "nightly-report-29383920"), None, "nightly-report-29383920-abcde",
     WorkloadRef("CronJob", "nightly-report")),
    (("Job", "migrate-db"), None, "migrate-db-abcde", WorkloadRef("Job", "migrate-db")),
    (("Job", "backup-20261128"), None, "backup-20261128-abcde",
     WorkloadRef("Job", "backup-20261128")),  # a date, not a CronJob's scheduled minutes
    (None, None, "debug", WorkloadRef("Pod", "debug")),
])
def test_offline_workload_inference(owner: tuple[str, str] | None, hash_: str | None, name: str,
                                    expected: WorkloadRef) -> None:
    p = pod("nginx:lates", owner=owner, template_hash=hash_, name=name)
    events = pull_failure("nginx:lates", NOT_FOUND, pod_name=name)
    assert only(PodFacts(pod=p, events=events, now=NOW)).workload == expected


def test_fix_commands_target_each_workload_kind_correctly() -> None:
    cron = only(facts_for("nginx:lates", NOT_FOUND, workload=WorkloadRef("CronJob", "nightly")))
    assert "kubectl set image cronjob/nightly 'web=nginx:<tag>' -n shop" in [
        f.command for f in cron.fixes]
    job = only(facts_for("nginx:lates", NOT_FOUND, workload=WorkloadRef("Job", "once")))
    assert any(f.command == "kubectl delete job/once -n shop" for f in job.fixes)
    bare = only(facts_for("registry.internal/team/billing:v2.1", UNAUTHORIZED,
                          workload=WorkloadRef("Pod", "debug")))
    assert "kubectl delete pod/debug -n shop" in [f.command for f in bare.fixes]
    assert not any("rollout" in f.command for f in bare.fixes)


def test_rate_limit_is_transient_and_offers_quota_check_and_mirror() -> None:
    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             '"docker.io/library/redis:7": failed to copy: httpReadSeeker: failed open: '
             'unexpected status code https://registry-1.docker.io/v2/library/redis/manifests/'
             'sha256:abc: 429 Too Many Requests - Server message: toomanyrequests: You have '
             'reached your pull rate limit. You may increase the limit by authenticating and '
             'upgrading: https://www.docker.com/increase-rate-limit')
    d = only(facts_for("redis:7", error))
    assert d.cause is Cause.RATE_LIMITED and d.transient
    text = "\n".join(f.command for f in d.fixes)
    assert "library/redis:pull" in text and "grep -i ratelimit" in text
    assert "/etc/containerd/certs.d/docker.io/hosts.toml" in text
    assert "--docker-server=https://index.docker.io/v1/" in text


def test_tls_fix_is_a_hosts_toml_for_the_exact_host() -> None:
    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             '"registry.internal:5000/app:1": failed to resolve reference '
             '"registry.internal:5000/app:1": failed to do request: Head '
             '"https://registry.internal:5000/v2/app/manifests/1": tls: failed to verify '
             'certificate: x509: certificate signed by unknown authority')
    d = only(facts_for("registry.internal:5000/app:1", error))
    assert d.cause is Cause.TLS_UNTRUSTED
    toml = next(f.command for f in d.fixes if "hosts.toml" in f.command)
    assert "/etc/containerd/certs.d/registry.internal:5000/hosts.toml" in toml
    assert 'ca = "/etc/containerd/certs.d/registry.internal:5000/ca.crt"' in toml


def test_backoff_estimate_follows_the_kubelet_schedule() -> None:
    def failures(count: int, seconds_ago: float) -> list[Any]:
        return [read_event(event("Failed", 'Failed to pull image "x": boom', count=count,
                                 last_ago=seconds_ago))]
    assert estimate_backoff(failures(1, 4), NOW).to_json() == {"attempts": 1,
                                                               "next_retry_seconds": 6}
    assert estimate_backoff(failures(3, 10), NOW).next_retry_seconds == 30
    assert estimate_backoff(failures(5, 100), NOW).next_retry_seconds == 60
    assert estimate_backoff(failures(9, 100), NOW).next_retry_seconds == 200
    assert estimate_backoff(failures(40, 1000), NOW).next_retry_seconds == 0
    assert estimate_backoff([], NOW).to_json() == {"attempts": 0, "next_retry_seconds": None}


def test_events_written_through_events_k8s_io_series() -> None:
    raw = event("Failed", 'Failed to pull image "x": boom')
    raw.update({"count": None, "firstTimestamp": None, "lastTimestamp": None,
                "eventTime": "2026-11-28T14:58:00.000000Z",
                "series": {"count": 7, "lastObservedTime": "2026-11-28T14:59:50.000000Z"}})
    parsed = read_event(raw)
    assert parsed.count == 7
    assert parsed.last_seen is not None and parsed.last_seen.isoformat().startswith(
        "2026-11-28T14:59:50")


def test_events_of_a_previous_pod_with_the_same_name_are_ignored() -> None:
    p = pod("nginx:lates", waiting_message='Back-off pulling image "nginx:lates"')
    stale = pull_failure("nginx:lates", UNAUTHORIZED)
    for raw in stale:
        raw["involvedObject"]["uid"] = "uid-of-an-earlier-pod"
    assert only(PodFacts(pod=p, events=stale, now=NOW)).cause is Cause.UNKNOWN


def test_json_contract_keys() -> None:
    out = diagnose(facts_for("nginx:lates", NOT_FOUND)).to_json()
    assert set(out) == {"namespace", "pod", "diagnoses"}
    entry = out["diagnoses"][0]
    assert {"container", "image", "cause", "transient", "summary", "evidence", "workload",
            "findings", "fixes", "backoff", "suggested_image"} <= set(entry)
    assert entry["suggested_image"] is None  # no registry answer: no suggestion, but the key
    assert entry["workload"] == {"kind": "Deployment", "name": "web"}
    assert set(entry["backoff"]) == {"attempts", "next_retry_seconds"}
    assert all(set(f) == {"title", "command"} for f in entry["fixes"])
    json.dumps(out)


RATE_LIMITED = ('rpc error: code = Unknown desc = failed to pull and unpack image '
                '"docker.io/library/nginx:1.27.3": failed to resolve reference '
                '"docker.io/library/nginx:1.27.3": unexpected status from HEAD request to '
                'https://registry-1.docker.io/v2/library/nginx/manifests/1.27.3: 429 Too Many '
                'Requests')


def test_rate_limit_fixes_depend_on_policy_and_existing_credentials() -> None:
    anonymous = only(facts_for("nginx:1.27.3", RATE_LIMITED, pull_policy="IfNotPresent"))
    commands = "\n".join(f.command for f in anonymous.fixes)
    assert "dockerhub-creds" in commands and "-u '<username>:<token>'" not in commands
    assert "imagePullPolicy" not in commands  # already IfNotPresent: nothing to change

    always = only(facts_for("nginx:1.27.3", RATE_LIMITED, pull_policy="Always"))
    assert any('"imagePullPolicy": "IfNotPresent"' in f.command for f in always.fixes)

    hub = PullSecretInfo("hub", "kubernetes.io/dockerconfigjson", ("https://index.docker.io/v1/",))
    authed = only(facts_for("nginx:1.27.3", RATE_LIMITED, pull_secrets=("hub",),
                            referenced_secrets={"hub": hub}))
    commands = "\n".join(f.command for f in authed.fixes)
    assert "create secret" not in commands
    assert "curl -s -u '<username>:<token>' \"https://auth.docker.io/token" in commands


def test_rate_limit_on_another_registry_points_the_mirror_at_that_host() -> None:
    error = RATE_LIMITED.replace("docker.io/library/nginx", "quay.io/acme/app").replace(
        "registry-1.docker.io/v2/library/nginx", "quay.io/v2/acme/app")
    d = only(facts_for("quay.io/acme/app:1.27.3", error))
    assert d.cause is Cause.RATE_LIMITED
    commands = "\n".join(f.command for f in d.fixes)
    assert "auth.docker.io" not in commands and "dockerhub-creds" not in commands
    assert "/etc/containerd/certs.d/quay.io/hosts.toml" in commands
    assert 'server = "https://quay.io"' in commands


# -- what the registry adds (facts gathered by bot/registry/investigator.py) ----------------

DIGEST = "sha256:" + "4" * 64


def test_registry_suggestion_goes_into_the_set_image_fix_and_pins_its_digest() -> None:
    from bot.diagnosis.facts import RegistryFacts

    reg = RegistryFacts(probe_cause=Cause.TAG_NOT_FOUND, repository_exists=True,
                        suggested_image="nginx:latest", suggestion_kind=Finding.TAG_SUGGESTION,
                        digest=DIGEST, probe_summary="docker.io/library/nginx has no tag lates")
    d = only(facts_for("nginx:lates", NOT_FOUND, registry={"nginx:lates": reg}))
    assert d.cause is Cause.TAG_NOT_FOUND
    assert Finding.TAG_SUGGESTION in d.findings
    assert d.suggested_image == d.to_json()["suggested_image"] == "nginx:latest"
    assert "— or the repository" not in d.summary  # the registry confirmed the repository
    assert d.fixes[0].command == "kubectl set image deployment/web web=nginx:latest -n shop"
    assert f"kubectl set image deployment/web web=nginx@{DIGEST} -n shop" in [
        f.command for f in d.fixes]
    assert not any("<digest>" in f.command or "<tag>" in f.command for f in d.fixes)
    assert d.evidence[-1] == "registry: docker.io/library/nginx has no tag lates"


def test_missing_repository_with_a_swapped_path_that_exists() -> None:
    from bot.diagnosis.facts import RegistryFacts

    image = "registry.internal/myapp/myorg:v1"
    error = NOT_FOUND.replace("docker.io/library/nginx:lates", image)
    reg = RegistryFacts(probe_cause=Cause.REPOSITORY_NOT_FOUND, repository_exists=False,
                        suggested_image="registry.internal/myorg/myapp:v1",
                        suggestion_kind=Finding.SWAPPED_PATH, digest=DIGEST)
    d = only(facts_for(image, error, registry={image: reg}))
    assert d.cause is Cause.REPOSITORY_NOT_FOUND
    assert Finding.SWAPPED_PATH in d.findings
    assert d.suggested_image == "registry.internal/myorg/myapp:v1"
    assert d.fixes[0].command == ("kubectl set image deployment/web "
                                  "web=registry.internal/myorg/myapp:v1 -n shop")


def test_expired_events_recovered_from_the_registry() -> None:
    from bot.diagnosis.facts import RegistryFacts

    image = "registry.internal/team/api:2.0"
    p = pod(image)
    events = [event("BackOff", f'Back-off pulling image "{image}"', type_="Normal", count=30)]
    reg = RegistryFacts(probe_cause=Cause.AUTH_REQUIRED, repository_exists=None,
                        probe_summary="401 UNAUTHORIZED for registry.internal/team/api:2.0")
    d = only(PodFacts(pod=p, events=events, now=NOW, registry={image: reg}))
    assert d.cause is Cause.AUTH_REQUIRED
    assert "registry: 401 UNAUTHORIZED" in d.evidence[-1]


def test_node_side_causes_are_not_overridden_by_the_bots_view() -> None:
    from bot.diagnosis.facts import RegistryFacts

    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             '"registry.internal/a:1": failed to resolve reference "registry.internal/a:1": '
             'failed to do request: Head "https://registry.internal/v2/a/manifests/1": dial tcp '
             '10.0.12.7:443: i/o timeout')
    reg = RegistryFacts(probe_cause=None, repository_exists=True, digest=DIGEST)
    d = only(facts_for("registry.internal/a:1", error, registry={"registry.internal/a:1": reg}))
    assert d.cause is Cause.NETWORK_UNREACHABLE
    assert d.suggested_image is None  # a digest to pin is not a different image
    assert f"kubectl set image deployment/web web=registry.internal/a@{DIGEST} -n shop" in [
        f.command for f in d.fixes]


def test_registry_host_typo_fix_comes_first() -> None:
    from bot.diagnosis.facts import RegistryFacts

    image = "registy.internal/payments:1.0"
    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             f'"{image}": failed to resolve reference "{image}": failed to do request: Head '
             '"https://registy.internal/v2/payments/manifests/1.0": dial tcp: lookup '
             'registy.internal on 10.96.0.10:53: no such host')
    reg = RegistryFacts(probe_cause=Cause.DNS_FAILURE,
                        suggested_image="registry.internal/payments:1.0",
                        suggestion_kind=Finding.REGISTRY_HOST_TYPO)
    d = only(facts_for(image, error, registry={image: reg}))
    assert d.cause is Cause.DNS_FAILURE
    assert Finding.REGISTRY_HOST_TYPO in d.findings
    assert d.suggested_image == "registry.internal/payments:1.0"
    assert d.fixes[0].command == ("kubectl set image deployment/web "
                                  "web=registry.internal/payments:1.0 -n shop")


def test_every_finding_and_cause_has_words() -> None:
    from bot.diagnosis.explain import EXPLANATIONS, FINDING_TEXT

    assert set(FINDING_TEXT) == set(Finding)
    assert set(EXPLANATIONS) == set(Cause)


def test_registry_5xx_is_a_transient_registry_problem_grouped_by_host() -> None:
    error = ('rpc error: code = Unknown desc = failed to pull and unpack image '
             '"docker.io/library/nginx:1.27": failed to resolve reference '
             '"docker.io/library/nginx:1.27": pulling from host mirror.internal failed with '
             'status code [manifests 1.27]: 502 Bad Gateway')
    d = only(facts_for("nginx:1.27", error))
    assert d.cause is Cause.NETWORK_UNREACHABLE and d.transient
    assert "5xx" in d.summary
    assert d.fixes[0].command == "curl -v https://registry-1.docker.io/v2/"
