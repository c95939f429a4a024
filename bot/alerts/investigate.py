"""Diagnose one failing pod: the API's facts, then the registry's answers, then the verdict.

`diagnose_pod` is the one way the bot diagnoses a live pod (the alert pipeline, `/imagepull
diagnose`, the CLI and the demo all call it), so what is read, what is asked of the registry
and in which order is decided here once.

The diagnosis runs twice and is cheap: a first pass on the API's facts tells which images need
the registry asked (only failures the registry can explain), a second pass uses the answers.
When nothing needs asking, the first pass is the answer.

Work per incident, not per pod (issue 10): in a storm the pods of one ReplicaSet fail alike.
`SharedDiagnoses` lets pods with the same owner, node, images, pull secrets and the same kubelet
error share one diagnosis for a few seconds: the first pod's facts are read and the registry
asked once, the others get the same diagnosis under their own name. Whether pods are alike is
read off the pod itself: the watch-fed view's copy (bot/kube/view.py) when it holds the pod,
else one GET.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from bot.diagnosis.causes import CAUSES
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, RegistryFacts
from bot.diagnosis.imageref import normalise_registry_key, try_parse_image
from bot.diagnosis.model import PodDiagnosis
from bot.diagnosis.owners import controller_of
from bot.kube.cache import TTLCache
from bot.kube.client import KubeClient
from bot.registry.client import RegistryClient
from bot.registry.investigator import RegistryInvestigator
from bot.registry.model import RegistryCredentials
from bot.registry.pullsecrets import for_registry, pod_credentials

log = logging.getLogger(__name__)

#: Seconds after which no further image of one diagnosis is probed: each probe is bounded by
#: the registry client's own timeouts, this bounds a pod with many failing images (the images
#: not asked are diagnosed from the API's facts alone).
PROBE_DEADLINE = 20.0

#: How long one diagnosis stands for the pods alike (seconds): long enough for a storm's burst
#: of one workload's pods to be worked through, short against any change that fixes them.
SHARE_SECONDS = 10.0
#: Groups remembered at once (one per workload, node and error: small).
SHARE_ENTRIES = 4_096


class SharedDiagnoses:
    """One diagnosis for the pods that are alike, for `window` seconds (0: off).

    Alike means: same namespace, same controller (by uid: a ReplicaSet or Job), same node
    (fixes name the node), same containers and images, same pull secrets and service account,
    and every container in the same state with the same kubelet message — the waiting message
    carries the pull error (kubelet >= 1.30). A pod with no waiting message is never shared:
    its diagnosis rests on its own events. Concurrent pods of one group wait for the first
    one's diagnosis rather than each reading and probing (bot/kube/cache.py's single flight).
    """

    def __init__(self, window: float = SHARE_SECONDS, max_entries: int = SHARE_ENTRIES) -> None:
        self.window = window
        self._results: TTLCache[PodDiagnosis] = TTLCache(window, max_entries)

    @property
    def reused(self) -> int:
        """Diagnoses answered from a pod alike (tests, metrics)."""
        return self._results.hits

    @staticmethod
    def key(pod: Mapping[str, Any]) -> Hashable | None:
        """What makes two pods alike, or None when the pod must be diagnosed on its own."""
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        owner = controller_of(meta)
        if owner is None or not owner.get("uid"):
            return None
        states = []
        failing = False
        for entry in [*(status.get("initContainerStatuses") or []),
                      *(status.get("containerStatuses") or [])]:
            state = entry.get("state") or {}
            waiting = state.get("waiting")
            if waiting:
                failing = failing or bool(waiting.get("message"))
                states.append((entry.get("name"), entry.get("image"), "waiting",
                               waiting.get("reason"), waiting.get("message")))
            else:
                kind = next(iter(state), "")
                states.append((entry.get("name"), entry.get("image"), kind,
                               (state.get(kind) or {}).get("reason"), None))
        if not failing:
            return None
        containers = tuple((c.get("name"), c.get("image"), c.get("imagePullPolicy"))
                           for c in [*(spec.get("initContainers") or []),
                                     *(spec.get("containers") or [])])
        secrets = tuple(str(r.get("name")) for r in spec.get("imagePullSecrets") or [])
        return (str(meta.get("namespace")), str(owner.get("uid")), spec.get("nodeName"),
                spec.get("serviceAccountName"), secrets, containers, tuple(states))

    def diagnose(self, pod: Mapping[str, Any], alone: Callable[[], PodDiagnosis]
                 ) -> PodDiagnosis:
        """The diagnosis of `pod`: a pod alike's (retargeted) if one is fresh, else `alone()`
        (whose result then stands for the pods alike)."""
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        key = self.key(pod) if self.window > 0 else None
        if key is None:
            return alone()
        result = self._results.get_or_load(key, alone)
        if result.pod == name and result.namespace == namespace:
            return result
        if not _shareable(result):  # names its pod somewhere: not true of this one
            return alone()
        return replace(result, namespace=namespace, pod=name)


def _shareable(result: PodDiagnosis) -> bool:
    """Whether the diagnosis holds nothing of its own pod's name (so it fits a pod alike)."""
    return result.pod not in json.dumps([d.to_json() for d in result.diagnoses])


def diagnose_pod(kube: KubeClient, namespace: str, pod: str,
                 registry: RegistryClient | None, known_hosts: Iterable[str] = (),
                 shared: SharedDiagnoses | None = None,
                 known: Mapping[str, Any] | None = None) -> PodDiagnosis:
    """The diagnosis of the pod, with the registry's answers for each image it can explain
    (none when `registry` is None: probing is off). With `shared` (the alert pipeline), pods
    alike share one diagnosis (see SharedDiagnoses) and the namespace-level facts may be up to
    the fact cache's freshness old; without it every fact but the owner chain and the server
    version is read now. `known`: the pod as the watch-fed view holds it (its
    `diagnosis_document`), so it is not read again; None: the pod is read (GET). Raises
    KubeNotFound for a pod that is gone and KubeError when the API cannot be read."""
    if shared is None:
        # one look, asked by a person or a command: the namespace's secrets, service accounts
        # and nodes as they are now, not as the pipeline last saw them
        fresh = replace(kube, facts=kube.facts.fresh_view())
        return _diagnose_pod(fresh, namespace, pod, registry, known_hosts, known)
    obj = known if known is not None else kube.read_pod(namespace, pod)
    return shared.diagnose(obj, lambda: _diagnose_pod(kube, namespace, pod, registry,
                                                      known_hosts, obj))


def _diagnose_pod(kube: KubeClient, namespace: str, pod: str,
                  registry: RegistryClient | None, known_hosts: Iterable[str],
                  obj: Mapping[str, Any] | None = None) -> PodDiagnosis:
    facts = kube.pod_facts(namespace, pod, obj)
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
    deadline = time.monotonic() + PROBE_DEADLINE
    for image in images:
        if time.monotonic() > deadline:
            log.info("pod %s/%s: registry probes past %.0f s; %s diagnosed without them",
                     namespace, facts.name, PROBE_DEADLINE,
                     ", ".join(i for i in images if i not in answers))
            break
        ref = try_parse_image(image)
        if ref is not None:
            answers[image] = investigator.investigate(ref, credentials_for, hosts)
    return answers
