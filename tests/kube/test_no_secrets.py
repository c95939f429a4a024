"""READ_SECRETS=false (the no-secrets profile): the client sends no request for a secret,
the fact watches have no secret watch, a credentialed registry probe is not made (rather than
made anonymously), and the diagnosis says what it skipped. The same pod with secrets read
is the control: there the secrets are asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.diagnosis.causes import Finding
from bot.diagnosis.engine import diagnose
from bot.kube.client import KubeClient, SecretsNotRead
from bot.kube.fact_watch import WatchedFacts
from bot.registry.pullsecrets import pod_credentials
from bot.sim import SimCluster, factory

pytestmark = pytest.mark.integration

IMAGE = "registry.internal/shop/private:1.0"


@pytest.mark.parametrize("read_secrets", [False, True])
def test_no_secret_is_asked_for(tmp_path: Path, read_secrets: bool) -> None:
    objects = factory.failing_deployment("shop", "private", IMAGE,
                                         factory.containerd_error("unauthorized", IMAGE),
                                         pull_secrets=["regcred"])
    pod = next(o["metadata"]["name"] for o in objects if o["kind"] == "Pod")
    with SimCluster() as sim:
        for obj in objects:
            sim.apply(obj)
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(tmp_path / "kc")),
                                           read_secrets=read_secrets)
        facts = kube.pod_facts("shop", pod)
        [found] = diagnose(facts).diagnoses
        watched = WatchedFacts(kube, ["shop"])
        if read_secrets:
            assert facts.referenced_secrets is not None
            assert Finding.SECRETS_NOT_READ not in found.findings
            assert pod_credentials(kube, "shop", ["regcred"]) == {}  # absent: none to use
            assert len(watched.secrets) == 2
            assert [a for a in sim.access_log if a[2] == "secrets"]
            return
        assert facts.secrets_read is False
        assert facts.referenced_secrets is None and facts.namespace_pull_secrets is None
        assert Finding.SECRETS_NOT_READ in found.findings
        with pytest.raises(SecretsNotRead, match=r"READ_SECRETS=false"):
            pod_credentials(kube, "shop", ["regcred"])
        with pytest.raises(SecretsNotRead):
            kube.list_resource("secrets", "shop")
        assert watched.secrets == [] and len(watched.accounts) == 1
        assert [a for a in sim.access_log if a[2] == "secrets"] == []
