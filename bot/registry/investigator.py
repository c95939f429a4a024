"""Ask the registry what the kubelet could not tell, and say only what it confirmed.

Runs between bot/kube/client.py (facts from the API) and the pure diagnosis: for each failing image
it asks the registry with the pod's own pull credentials whether the tag and repository exist,
which tag was probably meant, whether a swapped path or a corrected host works, and what digest
the working reference has. Every suggestion handed to the diagnosis was answered `ok` by the
registry. The bot's own network trouble (its DNS, its firewall) is reported as evidence, never
as the pod's cause: the nodes' view of the registry is not the bot's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.facts import RegistryFacts
from bot.diagnosis.imageref import ImageRef
from bot.diagnosis.suggest import (
    closest_tags,
    host_corrections,
    no_close_tag,
    swapped_paths,
    why_close,
)
from bot.registry.client import RegistryClient
from bot.registry.model import Outcome, Probe, RegistryCredentials

log = logging.getLogger(__name__)

CredentialsFor = Callable[[str], RegistryCredentials | None]

#: Outcomes that are the registry's own answer (not the bot failing to reach it).
_ANSWERS = frozenset({Outcome.OK, Outcome.MANIFEST_UNKNOWN, Outcome.NAME_UNKNOWN,
                      Outcome.UNAUTHORIZED, Outcome.DENIED, Outcome.RATE_LIMITED})


def _who(credentials: RegistryCredentials | None) -> str:
    return f"as {credentials.username}" if credentials else "anonymously"


def _summary(probe: Probe, ref: ImageRef, credentials: RegistryCredentials | None) -> str:
    asked = f"asked {ref.registry} for {ref.repository}:{ref.digest or ref.effective_tag} " \
            f"{_who(credentials)}"
    if probe.ok:
        return f"{asked}: it exists ({probe.digest})"
    code = f" {probe.registry_code}" if probe.registry_code else ""
    status = f"{probe.status}{code}" if probe.status else probe.outcome.value
    scope = " (insufficient_scope: the account lacks pull access)" \
        if probe.insufficient_scope else ""
    return f"{asked}: {status}{scope}" + (f" — {probe.message}" if probe.message else "")


class RegistryInvestigator:
    """Turns a failing image into RegistryFacts with a RegistryClient."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def investigate(self, ref: ImageRef, credentials_for: CredentialsFor,
                    known_hosts: Sequence[str] = ()) -> RegistryFacts:
        credentials = credentials_for(ref.registry)
        probe = self.client.head_manifest(ref, credentials)
        summary = _summary(probe, ref, credentials)
        log.debug("registry probe %s/%s: %s", ref.registry, ref.repository, probe.outcome)
        if probe.ok:
            return RegistryFacts(probe_cause=None, probe_summary=summary, repository_exists=True,
                                 digest=probe.digest)
        if probe.outcome is Outcome.DNS_FAILURE:
            fixed = self._corrected_host(ref, credentials_for, known_hosts)
            return fixed or RegistryFacts(probe_summary=f"{summary} (the bot cannot resolve it "
                                                       "either)")
        if probe.outcome not in _ANSWERS:
            return RegistryFacts(probe_summary=f"{summary} (from the bot's network; the nodes' "
                                               "view may differ)")
        cause = probe.cause
        if probe.insufficient_scope and credentials is not None:
            # distribution answers "valid user, no access to this repository" with 401 +
            # error="insufficient_scope": that is a permission problem, not missing credentials
            cause = Cause.FORBIDDEN
        facts = RegistryFacts(probe_cause=cause, probe_summary=summary)
        if probe.outcome is Outcome.MANIFEST_UNKNOWN:
            return self._closest_tag(ref, credentials, replace(facts, repository_exists=True))
        if probe.outcome is Outcome.NAME_UNKNOWN:
            return self._swapped(ref, credentials, replace(facts, repository_exists=False))
        return facts

    def _closest_tag(self, ref: ImageRef, credentials: RegistryCredentials | None,
                     facts: RegistryFacts, kind: Finding = Finding.TAG_SUGGESTION,
                     repository: str | None = None) -> RegistryFacts:
        """Suggest the existing tag a person most likely meant, confirmed by a HEAD."""
        repository = repository or ref.repository
        if ref.digest:
            return facts  # a digest has no "close" neighbour
        listing = self.client.list_tags(f"{ref.registry}/{repository}", credentials)
        candidates = closest_tags(ref.effective_tag, listing.tags)
        for tag in candidates:
            candidate = _image(ref, ref.registry, repository, tag)
            check = self.client.head_manifest(candidate, credentials, check_repository=False)
            if check.ok:
                return replace(facts, suggested_image=candidate, suggestion_kind=kind,
                               digest=check.digest, tags=listing.tags,
                               probe_summary=f"{facts.probe_summary}; "
                                             f"{why_close(ref.effective_tag, tag)}")
        if not candidates and listing.ok and kind is Finding.TAG_SUGGESTION:
            # nothing is close: say so, with what exists, rather than guess (issue 12)
            said = no_close_tag(ref.effective_tag, listing.tags)
            return replace(facts, tags=listing.tags,
                           probe_summary=f"{facts.probe_summary}; {said}")
        return replace(facts, tags=listing.tags)

    def _swapped(self, ref: ImageRef, credentials: RegistryCredentials | None,
                 facts: RegistryFacts) -> RegistryFacts:
        """The repository does not exist: does the path with two segments swapped?"""
        for path in swapped_paths(ref.repository):
            candidate = _image(ref, ref.registry, path, ref.digest or ref.effective_tag)
            check = self.client.head_manifest(candidate, credentials)
            if check.ok:
                return replace(facts, suggested_image=candidate,
                               suggestion_kind=Finding.SWAPPED_PATH, digest=check.digest)
            if check.outcome is Outcome.MANIFEST_UNKNOWN:  # right path, wrong tag as well
                found = self._closest_tag(ref, credentials, facts, Finding.SWAPPED_PATH, path)
                if found.suggested_image:
                    return found
        return facts

    def _corrected_host(self, ref: ImageRef, credentials_for: CredentialsFor,
                        known_hosts: Sequence[str]) -> RegistryFacts | None:
        for host in host_corrections(ref.registry, known_hosts):
            candidate = _image(ref, host, ref.repository, ref.digest or ref.effective_tag)
            credentials = credentials_for(host)
            check = self.client.head_manifest(candidate, credentials)
            if check.ok:
                return RegistryFacts(
                    probe_cause=Cause.DNS_FAILURE, repository_exists=None,
                    probe_summary=f"{ref.registry} does not resolve; {host} serves "
                                  f"{ref.repository}:{ref.digest or ref.effective_tag} "
                                  f"{_who(credentials)}",
                    suggested_image=candidate, suggestion_kind=Finding.REGISTRY_HOST_TYPO,
                    digest=check.digest)
        return None


def _image(ref: ImageRef, host: str, repository: str, tag_or_digest: str) -> str:
    """An image string in the user's own style: Docker Hub images stay short (`nginx:latest`)."""
    separator = "@" if tag_or_digest.startswith("sha256:") else ":"
    if ref.is_docker_hub and host == ref.registry and not ref.original.startswith(
            ("docker.io/", "index.docker.io/")):
        short = repository.removeprefix("library/") if repository.count("/") == 1 else repository
        return f"{short}{separator}{tag_or_digest}"
    return f"{host}/{repository}{separator}{tag_or_digest}"
