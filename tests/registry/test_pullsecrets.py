"""verify_pull_secret and the CLI's registry commands against real servers.

The Kubernetes side is the scenario cluster (real client, real wire format); the registry side
is Debian's distribution server (tests/support) and the Docker Hub stand-in.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGISTRY, main
from bot.diagnosis.imageref import parse_image
from bot.kube.client import KubeClient
from bot.registry.client import RegistryClient
from bot.registry.model import RegistrySettings
from bot.registry.pullsecrets import VerifyStatus, verify_pull_secret
from bot.sim import SimCluster
from tests.support.registry import DEPLOY_PASSWORD, RegistryServer, push_image
from tests.support.stubs import HUB_PASSWORD, HUB_USER, DockerHubStub

pytest_plugins = ["tests.support.fixtures"]
pytestmark = pytest.mark.integration


def pull_secret(name: str, server: str, username: str, password: str,
                namespace: str = "shop") -> dict[str, Any]:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {server: {"username": username, "password": password, "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": namespace},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def service_account(name: str, secrets: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "shop"},
            "imagePullSecrets": [{"name": s} for s in secrets]}


@pytest.fixture
def cluster(registry_auth: RegistryServer, tmp_path: Path) -> Iterator[tuple[SimCluster, Path]]:
    host = registry_auth.host
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        pull_secret("regcred", host, "deploy-bot", DEPLOY_PASSWORD),
        pull_secret("stale", f"http://{host}/v2/", "deploy-bot", "an-old-password"),
        pull_secret("hubcred", "https://index.docker.io/v1/", HUB_USER, HUB_PASSWORD),
        service_account("default", ["regcred"]),
    ]
    with SimCluster(objects=objects) as sim:
        yield sim, sim.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def image(registry_auth: RegistryServer, unique_repo: str) -> str:
    push_image(registry_auth, unique_repo, "1.0")
    return f"{registry_auth.host}/{unique_repo}:1.0"


def _verify(cluster: tuple[SimCluster, Path], registry: RegistryServer, secret: str,
            image: str, **endpoints: str) -> Any:
    kube = KubeClient.from_environment(str(cluster[1]))
    settings = RegistrySettings(insecure_hosts={registry.host, *endpoints}, endpoints=endpoints,
                                timeout=2.0)
    with RegistryClient(settings) as client:
        return verify_pull_secret(kube, client, "shop", secret, parse_image(image))


def test_valid_secret(cluster: tuple[SimCluster, Path], registry_auth: RegistryServer,
                      image: str) -> None:
    result = _verify(cluster, registry_auth, "regcred", image)
    assert result.status is VerifyStatus.VALID
    assert result.username == "deploy-bot"
    assert result.referenced_by == ("default",)
    assert result.notes == ()


def test_wrong_password_is_unauthorized(cluster: tuple[SimCluster, Path],
                                        registry_auth: RegistryServer, image: str) -> None:
    result = _verify(cluster, registry_auth, "stale", image)
    assert result.status is VerifyStatus.UNAUTHORIZED
    assert result.auths_key == f"http://{registry_auth.host}/v2/"
    assert any("references" in n for n in result.notes)  # nobody uses "stale"


def test_no_entry_for_the_images_registry(cluster: tuple[SimCluster, Path],
                                          registry_auth: RegistryServer, image: str) -> None:
    result = _verify(cluster, registry_auth, "hubcred", image)
    assert result.status is VerifyStatus.NO_ENTRY_FOR_REGISTRY
    assert result.username is None
    assert f"--docker-server={registry_auth.host}" in result.message


def test_unreachable_registry(cluster: tuple[SimCluster, Path], registry_auth: RegistryServer,
                              refused_port: int) -> None:
    result = _verify(cluster, registry_auth, "regcred", f"{registry_auth.host}/team/x:1",
                     **{registry_auth.host: f"http://127.0.0.1:{refused_port}"})
    assert result.status is VerifyStatus.REGISTRY_UNREACHABLE


def test_no_access_is_forbidden(registry_token: RegistryServer, tmp_path: Path) -> None:
    objects = [pull_secret("regcred", registry_token.host, "deploy-bot", DEPLOY_PASSWORD)]
    with SimCluster(objects=objects) as sim:
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kc")))
        with RegistryClient(RegistrySettings(insecure_hosts={registry_token.host})) as client:
            result = verify_pull_secret(kube, client, "shop", "regcred",
                                        parse_image(f"{registry_token.host}/private/app:1"))
    assert result.status is VerifyStatus.FORBIDDEN


def test_missing_secret_is_a_clear_error(cluster: tuple[SimCluster, Path],
                                         registry_auth: RegistryServer, image: str,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_auth.host)
    code = main(["verify-secret", "shop/nope", "--image", image,
                 "--kubeconfig", str(cluster[1])])
    assert code == EXIT_BAD_INPUT
    assert "namespace-scoped" in capsys.readouterr().err


def test_no_password_in_any_log_line_or_result(
        cluster: tuple[SimCluster, Path], registry_auth: RegistryServer, image: str,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_auth.host)
    caplog.set_level(logging.DEBUG)
    results = [_verify(cluster, registry_auth, name, image)
               for name in ("regcred", "stale", "hubcred")]
    for name in ("regcred", "stale", "hubcred"):
        for output in ("text", "json"):
            main(["verify-secret", f"shop/{name}", "--image", image,
                  "--kubeconfig", str(cluster[1]), "-o", output])
    printed = capsys.readouterr()
    haystack = "\n".join([
        *(r.getMessage() for r in caplog.records), *(repr(r.args) for r in caplog.records),
        *(repr(r) for r in results), *(json.dumps(r.to_json()) for r in results),
        printed.out, printed.err])
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for secret in (DEPLOY_PASSWORD, "an-old-password", HUB_PASSWORD,
                   base64.b64encode(f"deploy-bot:{DEPLOY_PASSWORD}".encode()).decode()):
        assert secret not in haystack
    assert "deploy-bot" in haystack  # the username is shown


def test_cli_verify_secret_json(cluster: tuple[SimCluster, Path], registry_auth: RegistryServer,
                                image: str, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_auth.host)
    code = main(["verify-secret", "shop/regcred", "--image", image,
                 "--kubeconfig", str(cluster[1]), "-o", "json"])
    assert code == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "valid" and out["username"] == "deploy-bot"


def test_cli_tags_suggests_the_closest(registry_plain: RegistryServer, unique_repo: str,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for tag in ("latest", "1.27.3"):
        push_image(registry_plain, unique_repo, tag)
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_plain.host)
    assert main(["tags", f"{registry_plain.host}/{unique_repo}:lates", "-o", "json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["exists"] is False and out["closest"][0] == "latest"
    assert sorted(out["tags"]) == ["1.27.3", "latest"]
    assert main(["tags", f"{registry_plain.host}/{unique_repo}:latest"]) == EXIT_OK
    assert "latest: exists" in capsys.readouterr().out


def test_cli_tags_on_a_dead_registry_exits_4(refused_port: int,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", f"127.0.0.1:{refused_port}")
    assert main(["tags", f"127.0.0.1:{refused_port}/team/app:1"]) == EXIT_REGISTRY
    assert "cannot list tags" in capsys.readouterr().err


def test_cli_quota_anonymous_and_with_a_secret(dockerhub_stub: DockerHubStub,
                                               cluster: tuple[SimCluster, Path],
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKERHUB_AUTH_URL", f"{dockerhub_stub.url}/token")
    monkeypatch.setenv("DOCKERHUB_REGISTRY_URL", dockerhub_stub.url)
    assert main(["quota", "-o", "json"]) == EXIT_OK
    anonymous = json.loads(capsys.readouterr().out)
    assert (anonymous["limit"], anonymous["remaining"]) == (100, 76)
    assert "outbound IP" in anonymous["summary"] and "NAT" in anonymous["summary"]
    assert main(["quota", "--secret", "shop/hubcred", "--kubeconfig", str(cluster[1])]) == EXIT_OK
    out = capsys.readouterr().out
    assert HUB_USER in out and HUB_PASSWORD not in out
    assert all(r.method in ("GET", "HEAD") for r in dockerhub_stub.requests)
    assert any(r.method == "HEAD" and "/manifests/" in r.path for r in dockerhub_stub.requests)
