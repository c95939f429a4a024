"""The escalation bundle of one pod, as `python -m bot bundle`, `/imagepull bundle` and the
alert's Bundle button build it (one function, so the three cannot differ).

Why here: the bundle joins the Kubernetes facts (bot/kube/bundle.py), the pull secrets'
usernames (bot/registry/pullsecrets.py, the one module that decodes a secret — and drops the
password there), and the diagnosis; this is the lowest layer that may use all three.
The registry is not asked: a bundle is what a person hands over, gathered in a second or two.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.alerts.investigate import fresh_first_look
from bot.diagnosis.bundle import Bundle, SecretFacts, assemble
from bot.diagnosis.engine import diagnose
from bot.kube.bundle import gather
from bot.kube.client import KubeClient
from bot.registry.pullsecrets import secret_usernames


def escalation_bundle(kube: KubeClient, namespace: str, pod: str,
                      known: dict[str, Any] | None = None) -> Bundle:
    """Gather and assemble the bundle. Raises KubeNotFound for a pod that does not exist and
    KubeError when the API cannot be read; every other refusal is a sentence in the bundle."""
    fresh, look = fresh_first_look(kube, namespace, pod, known)
    facts, pod_facts = gather(fresh, look.facts)
    secrets = facts.secrets
    if secrets is not None and kube.read_secrets:
        secrets = [_with_usernames(kube, namespace, s) for s in secrets]
    return assemble(replace(facts, secrets=secrets, diagnosis=diagnose(pod_facts)))


def _with_usernames(kube: KubeClient, namespace: str, secret: SecretFacts) -> SecretFacts:
    if not secret.exists:
        return secret
    usernames = secret_usernames(kube, namespace, secret.name)
    return replace(secret, usernames=usernames) if usernames else secret
