"""RegistryInvestigator against real distribution servers: only confirmed suggestions."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.diagnosis.imageref import parse_image
from bot.registry.client import RegistryClient
from bot.registry.investigator import RegistryInvestigator
from bot.registry.model import RegistryCredentials, RegistrySettings
from tests.diagnosis import kubelet
from tests.support.registry import DEPLOY_PASSWORD, RegistryServer, push_image

pytest_plugins = ["tests.support.fixtures"]
pytestmark = pytest.mark.integration


def _investigator(*servers: RegistryServer, **endpoints: str) -> RegistryInvestigator:
    insecure = {s.host for s in servers} | set(endpoints)
    client = RegistryClient(RegistrySettings(insecure_hosts=insecure, endpoints=endpoints,
                                             timeout=2.0))
    return RegistryInvestigator(client)


@pytest.fixture
def plain(registry_plain: RegistryServer) -> Iterator[RegistryInvestigator]:
    investigator = _investigator(registry_plain)
    yield investigator
    investigator.client.close()


def _anonymous(host: str) -> RegistryCredentials | None:
    return None


def test_typo_tag_gets_the_existing_tag_and_its_digest(
        registry_plain: RegistryServer, plain: RegistryInvestigator, unique_repo: str) -> None:
    latest = push_image(registry_plain, unique_repo, "latest")
    push_image(registry_plain, unique_repo, "1.27.3")
    ref = parse_image(f"{registry_plain.host}/{unique_repo}:lates")
    facts = plain.investigate(ref, _anonymous)
    assert facts.probe_cause is Cause.TAG_NOT_FOUND
    assert facts.repository_exists is True
    assert facts.suggested_image == f"{registry_plain.host}/{unique_repo}:latest"
    assert facts.suggestion_kind is Finding.TAG_SUGGESTION
    assert facts.digest == latest
    assert set(facts.tags) == {"latest", "1.27.3"}


def test_version_never_pushed_gets_the_newest_version(
        registry_plain: RegistryServer, plain: RegistryInvestigator, unique_repo: str) -> None:
    for tag in ("v1.9", "v2.0", "v2.1"):
        push_image(registry_plain, unique_repo, tag)
    facts = plain.investigate(parse_image(f"{registry_plain.host}/{unique_repo}:v3"), _anonymous)
    assert facts.suggested_image == f"{registry_plain.host}/{unique_repo}:v2.1"


def _containerd_not_found(image: str) -> str:
    """containerd's words for a tag the registry does not have (kubelet >= 1.26)."""
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found')


def test_lookalike_tag_v2_l_means_v2_1_through_the_diagnosis(
        registry_plain: RegistryServer, plain: RegistryInvestigator, unique_repo: str) -> None:
    """Issue 12: `v2.l` (a lower-case L) is `v2.1`, not the newest `v2.2` — end to end: the
    kubelet's events, the real registry's listing and HEAD, the diagnosis and its first fix."""
    digests = {tag: push_image(registry_plain, unique_repo, tag)
               for tag in ("v2.0", "v2.1", "v2.2")}
    image = f"{registry_plain.host}/{unique_repo}:v2.l"
    facts = PodFacts(pod=kubelet.pod(image),
                     events=kubelet.pull_failure(image, _containerd_not_found(image)),
                     now=kubelet.NOW)
    answers = {image: plain.investigate(parse_image(image), _anonymous)}
    entry = diagnose(PodFacts(pod=facts.pod, events=facts.events, now=facts.now,
                              registry=answers)).diagnoses[0]
    wanted = f"{registry_plain.host}/{unique_repo}:v2.1"
    assert entry.cause is Cause.TAG_NOT_FOUND
    assert entry.suggested_image == wanted
    assert Finding.TAG_SUGGESTION in entry.findings
    assert wanted in entry.fixes[0].command
    assert "v2.2" not in entry.fixes[0].command
    assert entry.evidence[-1].endswith("; v2.1 reads like v2.l (1 typed as l)")
    assert any(digests["v2.1"] in fix.command for fix in entry.fixes)  # pinned by digest
    # without the registry's answer the diagnosis does not guess
    assert diagnose(facts).diagnoses[0].suggested_image is None


def test_no_close_tag_is_said_with_the_newest(
        registry_plain: RegistryServer, plain: RegistryInvestigator, unique_repo: str) -> None:
    for tag in ("v1.9", "v2.0", "v2.1", "v2.2"):
        push_image(registry_plain, unique_repo, tag)
    facts = plain.investigate(parse_image(f"{registry_plain.host}/{unique_repo}:v9"), _anonymous)
    assert facts.probe_cause is Cause.TAG_NOT_FOUND
    assert facts.suggested_image is None
    assert (facts.probe_summary or "").endswith(
        "; no tag close to v9; the newest are v2.2, v2.1, v2.0 (of 4)")


def test_swapped_path_is_found_and_confirmed(registry_plain: RegistryServer,
                                             plain: RegistryInvestigator) -> None:
    org = f"org{secrets.token_hex(3)}"
    digest = push_image(registry_plain, f"{org}/myapp", "v1")
    ref = parse_image(f"{registry_plain.host}/myapp/{org}:v1")
    facts = plain.investigate(ref, _anonymous)
    assert facts.probe_cause is Cause.REPOSITORY_NOT_FOUND
    assert facts.repository_exists is False
    assert facts.suggested_image == f"{registry_plain.host}/{org}/myapp:v1"
    assert facts.suggestion_kind is Finding.SWAPPED_PATH
    assert facts.digest == digest


def test_missing_repository_without_a_swap_suggests_nothing(
        registry_plain: RegistryServer, plain: RegistryInvestigator) -> None:
    ref = parse_image(f"{registry_plain.host}/nobody/{secrets.token_hex(4)}:v1")
    facts = plain.investigate(ref, _anonymous)
    assert facts.probe_cause is Cause.REPOSITORY_NOT_FOUND
    assert facts.suggested_image is None


def test_misspelled_host_is_corrected_from_known_hosts(registry_plain: RegistryServer,
                                                       unique_repo: str) -> None:
    digest = push_image(registry_plain, unique_repo, "1.0")
    investigator = _investigator(registry_plain, **{"registry.internal": registry_plain.url})
    ref = parse_image(f"registy.internal/{unique_repo}:1.0")  # does not resolve anywhere
    facts = investigator.investigate(ref, _anonymous, ["registry.internal", "docker.io"])
    assert facts.probe_cause is Cause.DNS_FAILURE
    assert facts.suggested_image == f"registry.internal/{unique_repo}:1.0"
    assert facts.suggestion_kind is Finding.REGISTRY_HOST_TYPO
    assert facts.digest == digest


def test_the_pods_own_credentials_are_used(registry_auth: RegistryServer,
                                           unique_repo: str) -> None:
    seed = registry_auth.seed_credentials or registry_auth.credentials
    push_image(registry_auth, unique_repo, "2.0", credentials=seed)
    investigator = _investigator(registry_auth)
    ref = parse_image(f"{registry_auth.host}/{unique_repo}:2.1")
    right = RegistryCredentials("deploy-bot", DEPLOY_PASSWORD)
    wrong = RegistryCredentials("deploy-bot", "not-the-password")

    with_right = investigator.investigate(ref, lambda host: right)
    assert with_right.probe_cause is Cause.TAG_NOT_FOUND
    assert with_right.suggested_image == f"{registry_auth.host}/{unique_repo}:2.0"
    assert "as deploy-bot" in (with_right.probe_summary or "")

    with_wrong = investigator.investigate(ref, lambda host: wrong)
    assert with_wrong.probe_cause is Cause.AUTH_REQUIRED
    assert with_wrong.suggested_image is None
    anonymous = investigator.investigate(ref, _anonymous)
    assert anonymous.probe_cause is Cause.AUTH_REQUIRED
    for facts in (with_right, with_wrong, anonymous):
        assert DEPLOY_PASSWORD not in repr(facts) and "not-the-password" not in repr(facts)
    investigator.client.close()


def test_valid_user_without_access_is_forbidden(registry_token: RegistryServer) -> None:
    investigator = _investigator(registry_token)
    ref = parse_image(f"{registry_token.host}/private/app:1")  # deploy-bot may pull team/* only
    facts = investigator.investigate(
        ref, lambda host: RegistryCredentials("deploy-bot", DEPLOY_PASSWORD))
    assert facts.probe_cause is Cause.FORBIDDEN
    assert "insufficient_scope" in (facts.probe_summary or "")
    investigator.client.close()


def test_the_bots_own_network_trouble_is_evidence_not_a_cause(refused_port: int) -> None:
    investigator = _investigator(**{"registry.internal": f"http://127.0.0.1:{refused_port}"})
    facts = investigator.investigate(parse_image("registry.internal/team/app:1"), _anonymous)
    assert facts.probe_cause is None
    assert "bot's network" in (facts.probe_summary or "")
    investigator.client.close()
