"""Diagnose one failing pod: the API's facts, then the registry's answers, then the verdict.

`diagnose_pod` is the one way the bot diagnoses a live pod (the alert pipeline, `/imagepull
diagnose`, the CLI and the demo all call it), so what is read, what is asked of the registry
and in which order is decided here once.

The diagnosis runs twice and is cheap: a first pass on the API's facts tells which images need
the registry asked (only failures the registry can explain), a second pass uses the answers.
When nothing needs asking, the first pass is the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from bot.diagnosis.causes import CAUSES
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, RegistryFacts
from bot.diagnosis.imageref import normalise_registry_key, try_parse_image
from bot.diagnosis.model import PodDiagnosis
from bot.kube.client import KubeClient
from bot.registry.client import RegistryClient
from bot.registry.investigator import RegistryInvestigator
from bot.registry.model import RegistryCredentials
from bot.registry.pullsecrets import for_registry, pod_credentials


def diagnose_pod(kube: KubeClient, namespace: str, pod: str,
                 registry: RegistryClient | None, known_hosts: Iterable[str] = ()
                 ) -> PodDiagnosis:
    """The diagnosis of the pod, with the registry's answers for each image it can explain
    (none when `registry` is None: probing is off). Raises KubeNotFound for a pod that is
    gone and KubeError when the API cannot be read."""
    facts = kube.pod_facts(namespace, pod)
    first = diagnose(facts)
    if registry is None:
        return first
    images = {d.image for d in first.diagnoses if CAUSES[d.cause].probe_worthy}
    if not images:
        return first
    answers = _ask_registry(kube, registry, namespace, facts, sorted(images), known_hosts)
    return diagnose(replace(facts, registry=answers))


def _ask_registry(kube: KubeClient, registry: RegistryClient, namespace: str, facts: PodFacts,
                  images: list[str], known_hosts: Iterable[str]) -> dict[str, RegistryFacts]:
    """RegistryFacts per image, asked with the pod's own pull secrets; the hosts the pod's
    secrets (and the namespace's) name are the candidates for a misspelled registry host."""
    credentials = pod_credentials(kube, namespace, facts.pod_pull_secret_names)

    def credentials_for(host: str) -> RegistryCredentials | None:
        match = for_registry(credentials, host)
        return match[1] if match else None

    hosts = [*known_hosts, *(normalise_registry_key(k) for k in credentials)]
    for secret in facts.namespace_pull_secrets or ():
        hosts.extend(normalise_registry_key(k) for k in secret.registries)
    investigator = RegistryInvestigator(registry)
    answers: dict[str, RegistryFacts] = {}
    for image in images:
        ref = try_parse_image(image)
        if ref is not None:
            answers[image] = investigator.investigate(ref, credentials_for, hosts)
    return answers
