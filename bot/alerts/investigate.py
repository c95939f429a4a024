"""Gather everything about one failing pod: the API's facts, then the registry's answers.

The diagnosis runs twice and is cheap: a first pass on the API's facts tells which images need
the registry asked (only failures the registry can explain), a second pass uses the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from bot.diagnosis.causes import CAUSES
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, RegistryFacts
from bot.diagnosis.imageref import normalise_registry_key, try_parse_image
from bot.kube.client import KubeClient
from bot.registry.client import RegistryClient
from bot.registry.investigator import RegistryInvestigator
from bot.registry.model import RegistryCredentials
from bot.registry.pullsecrets import for_registry, pod_credentials


def investigate_pod(kube: KubeClient, namespace: str, pod: str,
                    registry: RegistryClient | None, known_hosts: Iterable[str] = ()
                    ) -> PodFacts:
    """PodFacts for the pod, with RegistryFacts for each image the registry can explain."""
    facts = kube.pod_facts(namespace, pod)
    if registry is None:
        return facts
    images = {d.image for d in diagnose(facts).diagnoses if CAUSES[d.cause].probe_worthy}
    if not images:
        return facts
    credentials = pod_credentials(kube, namespace, facts.pod_pull_secret_names)

    def credentials_for(host: str) -> RegistryCredentials | None:
        match = for_registry(credentials, host)
        return match[1] if match else None

    hosts = [*known_hosts, *(normalise_registry_key(k) for k in credentials)]
    for secret in facts.namespace_pull_secrets or ():
        hosts.extend(normalise_registry_key(k) for k in secret.registries)
    investigator = RegistryInvestigator(registry)
    answers: dict[str, RegistryFacts] = {}
    for image in sorted(images):
        ref = try_parse_image(image)
        if ref is not None:
            answers[image] = investigator.investigate(ref, credentials_for, hosts)
    return replace(facts, registry=answers)
