"""Diagnose one failing pod: the API's facts, then the registry's answers, then the verdict.

`diagnose_pod` is the one way the bot diagnoses a live pod for a person (`/imagepull
diagnose`, the CLI and the demo call it): it reads the pod's facts, asks the registry about
each image the registry can explain, and answers once both are in. The alert pipeline takes
the same two steps apart (issue 10, Deliver 3: a registry probe never holds up the alert):
`first_look` is the diagnosis from the API's facts and the registry answers already known
(`RegistryAnswers`), observed at once so the incident's group_wait starts; `ask_registry` is
run afterwards on the pipeline's small probe pool (bot/alerts/pipeline.py), its answers are
remembered, and the pod is diagnosed again with them: the refined diagnosis follows the first
one into the incident (and into the root message, as an edit when it was already posted).

The diagnosis itself runs twice and is cheap: a first pass on the API's facts tells which
images need the registry asked (only failures the registry can explain), a second pass uses
the answers. When nothing needs asking, the first pass is the answer.

Work per incident, not per pod (issue 10): in a storm the pods of one ReplicaSet fail alike.
`SharedDiagnoses` lets pods with the same owner, node, images, pull secrets and the same kubelet
error share one first look for a few seconds: the first pod's facts are read once, the others
get the same diagnosis under their own name. Whether pods are alike is read off the pod itself:
the watch-fed view's copy (bot/kube/view.py) when it holds the pod, else one GET. The registry
is asked once per question (namespace, pull secrets, images), however many pods wait for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
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
#: How long the registry's answers about an image stand before it is asked again (seconds):
#: the registry client's own cache keeps an answer this long too (REGISTRY_CACHE_TTL_SECONDS).
RECHECK_SECONDS = 60.0
#: How long a remembered answer is still used for a first look while it is asked again: a pod
#: re-diagnosed on the kubelet's back-off (up to 300 s apart) keeps its refined cause rather
#: than falling back to the kubelet's and moving between incidents each time.
ANSWER_SECONDS = 900.0
#: Registry questions remembered at once.
ANSWER_ENTRIES = 4_096


@dataclass(frozen=True)
class FirstLook:
    """A pod's diagnosis from the API's facts alone, with the facts it rests on.

    Pods alike share one (SharedDiagnoses): `facts` are then the first pod's, `diagnosis`
    is retargeted to each pod."""

    facts: PodFacts
    diagnosis: PodDiagnosis

    @property
    def probe_images(self) -> tuple[str, ...]:
        """The images whose failure the registry can explain (sorted, each once)."""
        return tuple(sorted({d.image for d in self.diagnosis.diagnoses
                             if CAUSES[d.cause].probe_worthy}))

    @property
    def question(self) -> Hashable:
        """What is asked of the registry: the same images with the same pull secrets in one
        namespace get the same answers."""
        return (self.facts.namespace, self.facts.pod_pull_secret_names, self.probe_images)


class RegistryAnswers:
    """The registry's last answers per question and image (`FirstLook.question`), so that a
    pod's first look already has what the registry said about its images; thread-safe."""

    def __init__(self, recheck: float = RECHECK_SECONDS, keep: float = ANSWER_SECONDS,
                 max_entries: int = ANSWER_ENTRIES) -> None:
        self.recheck = recheck
        self._answers: TTLCache[tuple[float, dict[str, RegistryFacts]]] = TTLCache(
            keep, max_entries)

    def known(self, look: FirstLook) -> tuple[dict[str, RegistryFacts], bool]:
        """The answers known for the look's images, and whether to ask (again): some image
        has none, or they are older than `recheck`."""
        images = look.probe_images
        if not images:
            return {}, False
        found = self._answers.get(look.question)
        if found is None:
            return {}, True
        at, answers = found
        known = {image: answers[image] for image in images if image in answers}
        return known, len(known) < len(images) or time.monotonic() - at >= self.recheck

    def put(self, question: Hashable, answers: dict[str, RegistryFacts]) -> None:
        self._answers.put(question, (time.monotonic(), dict(answers)))


class SharedDiagnoses:
    """One first look for the pods that are alike, for `window` seconds (0: off).

    Alike means: same namespace, same controller (by uid: a ReplicaSet or Job), same node
    (fixes name the node), same containers and images, same pull secrets and service account,
    and every container in the same state with the same kubelet message — the waiting message
    carries the pull error (kubelet >= 1.30). A pod with no waiting message is never shared:
    its diagnosis rests on its own events. Concurrent pods of one group wait for the first
    one's diagnosis rather than each reading and probing (bot/kube/cache.py's single flight).
    """

    def __init__(self, window: float = SHARE_SECONDS, max_entries: int = SHARE_ENTRIES) -> None:
        self.window = window
        self._results: TTLCache[FirstLook] = TTLCache(window, max_entries)

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

    def diagnose(self, pod: Mapping[str, Any], alone: Callable[[], FirstLook]) -> FirstLook:
        """The first look at `pod`: a pod alike's (its diagnosis retargeted) if one is fresh,
        else `alone()` (whose result then stands for the pods alike)."""
        meta = pod.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        key = self.key(pod) if self.window > 0 else None
        if key is None:
            return alone()
        look = self._results.get_or_load(key, alone)
        result = look.diagnosis
        if result.pod == name and result.namespace == namespace:
            return look
        if not _shareable(result):  # names its pod somewhere: not true of this one
            return alone()
        return replace(look, diagnosis=replace(result, namespace=namespace, pod=name))


def _shareable(result: PodDiagnosis) -> bool:
    """Whether the diagnosis holds nothing of its own pod's name (so it fits a pod alike)."""
    return result.pod not in json.dumps([d.to_json() for d in result.diagnoses])




def diagnose_pod(kube: KubeClient, namespace: str, pod: str,
                 registry: RegistryClient | None, known_hosts: Iterable[str] = (),
                 known: Mapping[str, Any] | None = None) -> PodDiagnosis:
    """The diagnosis of the pod as it is now, with the registry's answers for each image it
    can explain (none when `registry` is None: probing is off), for a person or a command:
    every fact but the owner chain and the server version is read now, and the registry is
    asked before the answer. `known`: the pod as the watch-fed view holds it, so it is not
    read again; None: the pod is read (GET). Raises KubeNotFound for a pod that is gone and
    KubeError when the API cannot be read."""
    # one look, asked by a person or a command: the namespace's secrets, service accounts
    # and nodes as they are now, not as the pipeline last saw them
    fresh, look = fresh_first_look(kube, namespace, pod, known)
    if registry is None or not look.probe_images:
        return look.diagnosis
    return with_answers(look, ask_registry(fresh, registry, look, known_hosts))


def fresh_first_look(kube: KubeClient, namespace: str, pod: str,
                     known: Mapping[str, Any] | None = None) -> tuple[KubeClient, FirstLook]:
    """A person's look at a pod: the API's facts as they are now (the namespace's secrets,
    service accounts and nodes read again, not from the pipeline's freshness window), and the
    client with those fresh tables, for further reads of the same look (the bundle)."""
    fresh = replace(kube, facts=kube.facts.fresh_view())
    return fresh, _first_look(fresh, namespace, pod, known)


def first_look(kube: KubeClient, namespace: str, pod: str, shared: SharedDiagnoses,
               known: Mapping[str, Any] | None = None) -> FirstLook:
    """The alert pipeline's first look at a pod: the API's facts only, shared by the pods
    alike (see SharedDiagnoses; the namespace-level facts may be up to the fact cache's
    freshness old). `known`: the view's copy of the pod (its `diagnosis_document`), else one
    GET. Raises KubeNotFound for a pod that is gone and KubeError when the API cannot be
    read."""
    obj = known if known is not None else kube.read_pod(namespace, pod)
    return shared.diagnose(obj, lambda: _first_look(kube, namespace, pod, obj))


def _first_look(kube: KubeClient, namespace: str, pod: str,
                obj: Mapping[str, Any] | None = None) -> FirstLook:
    facts = kube.pod_facts(namespace, pod, obj)
    return FirstLook(facts, diagnose(facts))


def with_answers(look: FirstLook, answers: Mapping[str, RegistryFacts]) -> PodDiagnosis:
    """The look's diagnosis with the registry's answers (the look's own when there are none),
    under the look's pod name."""
    if not answers:
        return look.diagnosis
    result = diagnose(replace(look.facts, registry=dict(answers)))
    return replace(result, namespace=look.diagnosis.namespace, pod=look.diagnosis.pod)


def ask_registry(kube: KubeClient, registry: RegistryClient, look: FirstLook,
                 known_hosts: Iterable[str]) -> dict[str, RegistryFacts]:
    """RegistryFacts per probe-worthy image of the look, asked with the pod's own pull
    secrets; the hosts the pod's secrets (and the namespace's) name are the candidates for a
    misspelled registry host. Images not asked within PROBE_DEADLINE get an empty answer
    (diagnosed from the API's facts alone)."""
    facts = look.facts
    namespace = facts.namespace
    images = list(look.probe_images)
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
    return {image: answers.get(image, RegistryFacts()) for image in images}
