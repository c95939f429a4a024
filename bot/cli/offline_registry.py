"""Offline with consent: a pasted pod's images asked of their registry (issue 12, Deliver 6).

`diagnose --pod-json FILE` never leaves the machine. With `--registry` the person consents to
one thing more: each image the registry can explain (a missing tag or repository, refused
credentials, an unknown failure) is asked of its registry, anonymously or with the credentials
of `--secret-json FILE` (a Secret as `kubectl get secret -o json` prints it), so a ticket gets
the same confirmed suggestion (`v2.l` → `v2.1`) a live diagnosis gets.

The secret's credentials live only in this process, for those requests: RegistryCredentials
hides its password from repr, and every error about the secret names the file and the field,
never the data.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from bot.alerts.investigate import PROBE_DEADLINE, FirstLook, with_answers
from bot.cli.offline import InputError, load_objects
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, RegistryFacts
from bot.diagnosis.imageref import normalise_registry_key, try_parse_image
from bot.diagnosis.model import PodDiagnosis
from bot.registry.client import RegistryClient
from bot.registry.investigator import RegistryInvestigator
from bot.registry.model import RegistryCredentials
from bot.registry.pullsecrets import SecretError, credentials_from_secret, for_registry

Credentials = Mapping[str, RegistryCredentials]


def credentials_from_file(path: Path) -> dict[str, RegistryCredentials]:
    """auths key → credentials of the one docker-registry Secret in `path`.

    Raises InputError (naming the file, never its data) when the file holds no Secret, more
    than one, or one that is not a usable docker-registry secret."""
    secrets = load_objects(path, "Secret")
    if len(secrets) != 1:
        raise InputError(f"{path} must hold one Secret (kubectl get secret NAME -o json), "
                         f"not {len(secrets)}")
    try:
        credentials = credentials_from_secret(secrets[0])
    except SecretError as exc:
        raise InputError(f"{path}: {exc}") from None
    if not credentials:
        raise InputError(f"{path}: the secret holds no username and password for any registry")
    return credentials


def diagnose_with_registry(facts: PodFacts, registry: RegistryClient,
                           credentials: Credentials, known_hosts: Iterable[str] = ()
                           ) -> PodDiagnosis:
    """The pod's diagnosis from its files, then again with its registries' answers.

    Only images whose failure the registry can explain are asked (as for a live pod); the
    hosts of `known_hosts` and of the secret are the candidates for a misspelled host."""
    look = FirstLook(facts, diagnose(facts))
    if not look.probe_images:
        return look.diagnosis
    return with_answers(look, ask_registries(look, registry, credentials, known_hosts))


def ask_registries(look: FirstLook, registry: RegistryClient, credentials: Credentials,
                   known_hosts: Iterable[str] = ()) -> dict[str, RegistryFacts]:
    """RegistryFacts per probe-worthy image of the look (an empty answer for those not asked
    within PROBE_DEADLINE)."""

    def credentials_for(host: str) -> RegistryCredentials | None:
        match = for_registry(credentials, host)
        return match[1] if match else None

    hosts = [*known_hosts, *(normalise_registry_key(k) for k in credentials)]
    investigator = RegistryInvestigator(registry)
    answers: dict[str, RegistryFacts] = {}
    deadline = time.monotonic() + PROBE_DEADLINE
    for image in look.probe_images:
        if time.monotonic() > deadline:
            break
        ref = try_parse_image(image)
        if ref is not None:
            answers[image] = investigator.investigate(ref, credentials_for, hosts)
    return {image: answers.get(image, RegistryFacts()) for image in look.probe_images}


def diagnose_files_with_registry(pods: Iterable[PodFacts], registry: RegistryClient,
                                 credentials: Credentials, known_hosts: Iterable[str] = ()
                                 ) -> list[PodDiagnosis]:
    """`diagnose_with_registry` for each pod of the files, in order."""
    hosts = list(known_hosts)
    return [diagnose_with_registry(facts, registry, credentials, hosts) for facts in pods]

