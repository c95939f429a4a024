"""What `/imagepull` and the alert buttons do, behind the thin listeners in handlers/.

Each method returns Slack (text, blocks) or posts into the incident's thread; none of them
raises for ordinary trouble (unknown pod, forbidden read, unreachable registry): the person
gets a sentence saying what went wrong instead of a stack trace.

Sentences are `Mrkdwn` templates (bot/slack/text.py): names, exception texts and registry
answers are escaped into them, because any of them can carry a hostile pod or secret name.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk import WebClient

from bot.alerts.bundle import escalation_bundle
from bot.alerts.incidents import Incident, IncidentManager
from bot.alerts.investigate import diagnose_pod
from bot.alerts.presence import cluster_presence
from bot.chatops.approvals import ApprovalService
from bot.chatops.commands import (
    HELP,
    Audit,
    Bundle,
    Clusters,
    Command,
    Diagnose,
    Help,
    Quota,
    Restart,
    VerifySecret,
)
from bot.config import Settings
from bot.diagnosis.audit import audit
from bot.diagnosis.imageref import InvalidImageReference, parse_image
from bot.kube.client import (
    SECRETS_HOW_TO_GRANT,
    SECRETS_NOT_READ,
    KubeClient,
    KubeError,
    KubeNotFound,
)
from bot.kube.inventory import gather
from bot.kube.remediation import RemediationRefused
from bot.registry.client import RegistryClient
from bot.registry.pullsecrets import SecretError, SecretVerification, verify_pull_secret
from bot.slack.blocks import (
    audit_message,
    bundle_message,
    clusters_message,
    diagnosis_message,
    text_message,
)
from bot.slack.text import Mrkdwn, code, sentence

log = logging.getLogger(__name__)

Message = tuple[str, list[dict[str, Any]]]

class Interactive:
    """The services every answer needs, passed in by the composition root (bot/app.py)."""

    def __init__(self, *, settings: Settings, kube: KubeClient, registry: RegistryClient | None,
                 incidents: IncidentManager, approvals: ApprovalService,
                 slack: WebClient) -> None:
        self.settings = settings
        self.kube = kube
        self.registry = registry
        self.incidents = incidents
        self.approvals = approvals
        self.slack = slack

    def allowed_channel(self, channel_id: str) -> bool:
        channels = self.settings.command_channels
        return not channels or channel_id in channels

    # -- slash command ------------------------------------------------------------------------

    def run(self, command: Command, user: str, channel: str) -> Message:
        try:
            match command:
                case Help():
                    return text_message(HELP)
                case Diagnose(namespace, pod):
                    return self.diagnose(namespace, pod)
                case Bundle(namespace, pod):
                    return self.bundle(namespace, pod)
                case Quota(secret):
                    return self.quota(secret)
                case VerifySecret(namespace, name, image):
                    return self.verify(namespace, name, image)
                case Restart(namespace, kind, name):
                    return self.request("rollout_restart", namespace, kind, name, user, channel)
                case Audit(namespace):
                    return self.audit(namespace)
                case Clusters():
                    return self.clusters()
        except KubeNotFound as exc:
            return text_message(Mrkdwn("⚠️ {}.").format(sentence(exc)))
        except KubeError as exc:
            return text_message(Mrkdwn("⚠️ Kubernetes: {}").format(sentence(exc)))
        except (RemediationRefused, SecretError) as exc:
            return text_message(Mrkdwn("🚫 {}").format(sentence(exc)))
        return text_message(HELP)

    def diagnose(self, namespace: str, pod: str) -> Message:
        return diagnosis_message(diagnose_pod(self.kube, namespace, pod, self.registry,
                                              self.settings.registry_endpoints))

    def bundle(self, namespace: str, pod: str) -> Message:
        """The escalation bundle of one pod (bot/alerts/bundle.py): parts this install may
        not read are named in it, never a reason to fail."""
        return bundle_message(escalation_bundle(self.kube, namespace, pod))

    def audit(self, namespace: str | None) -> Message:
        """The prevention audit of one namespace, or of every watched one (WATCH_NAMESPACES;
        the whole cluster when unset). A namespace outside WATCH_NAMESPACES is refused: the
        bot's role there may be none at all."""
        watched = self.settings.watch_namespaces
        if namespace is not None and watched and namespace not in watched:
            return text_message(Mrkdwn("🚫 {} is not one of the namespaces this bot watches "
                                       "(WATCH_NAMESPACES: {}).").format(
                code(namespace), Mrkdwn(", ").join(code(n) for n in watched)))
        report = audit(gather(self.kube, [namespace] if namespace else watched or None))
        return audit_message(report, scope=namespace)

    def clusters(self) -> Message:
        """Every cluster's agent sharing the store (issue 13): reporting, or silent since."""
        return clusters_message(cluster_presence(self.incidents.store), time.time(),
                                self.settings.heartbeat_seconds)

    def quota(self, secret: tuple[str, str] | None) -> Message:
        from bot.registry.dockerhub import dockerhub_quota
        from bot.registry.pullsecrets import secret_credentials

        credentials = None
        if secret is not None and not self.settings.read_secrets:
            return self._secrets_not_read(f"{secret[0]}/{secret[1]}", "checked for its quota")
        if secret is not None:
            credentials = secret_credentials(self.kube, *secret, "docker.io")
            if credentials is None:
                return text_message(Mrkdwn("🚫 {} has no Docker Hub credentials (no auths key "
                                           "for docker.io in any spelling).")
                                    .format(code(f"{secret[0]}/{secret[1]}")))
        result = dockerhub_quota(credentials, auth_url=self.settings.dockerhub_auth_url,
                                 registry_url=self.settings.dockerhub_registry_url,
                                 timeout=self.settings.registry_timeout_seconds)
        return text_message(Mrkdwn("🐳 {}").format(sentence(result.describe())))

    def _secrets_not_read(self, what: str, verb: str) -> Message:
        """The answer to a command that needs a secret in an install that reads none."""
        return text_message(Mrkdwn("🔒 {} cannot be {}: {}; {}.").format(
            code(what), verb, SECRETS_NOT_READ, SECRETS_HOW_TO_GRANT))

    def verify(self, namespace: str, name: str, image: str | None) -> Message:
        if not self.settings.read_secrets:
            return self._secrets_not_read(f"{namespace}/{name}", "verified")
        if self.registry is not None:
            return self._verify(self.registry, namespace, name, image)
        from bot.registry.client import client_from_settings

        with client_from_settings(self.settings) as registry:  # REGISTRY_PROBE=false: ad hoc
            return self._verify(registry, namespace, name, image)

    def _verify(self, registry: Any, namespace: str, name: str, image: str | None) -> Message:
        if image is not None:
            result = verify_pull_secret(self.kube, registry, namespace, name,
                                        parse_image(image))
            return text_message(_verification_line(result))
        pod = self.kube.read_pod(namespace, name)  # NS/POD form
        spec = pod.get("spec") or {}
        secrets = [str(r.get("name")) for r in spec.get("imagePullSecrets") or []]
        images = [str(c.get("image")) for key in ("initContainers", "containers")
                  for c in spec.get(key) or []]
        if not secrets:
            return text_message(Mrkdwn("🔎 {} uses no pull secret: the kubelet pulls its "
                                       "images anonymously.").format(code(f"{namespace}/{name}")))
        lines: list[Mrkdwn] = []
        for secret in secrets:
            for img in dict.fromkeys(images):
                try:
                    ref = parse_image(img)
                    lines.append(_verification_line(verify_pull_secret(
                        self.kube, registry, namespace, secret, ref, pod)))
                except (KubeNotFound, SecretError, InvalidImageReference) as exc:
                    lines.append(Mrkdwn("🚫 {} for {}: {}").format(
                        code(f"{namespace}/{secret}"), code(img), sentence(exc)))
        return text_message(Mrkdwn("\n").join(lines))

    def request(self, action: str, namespace: str, kind: str, name: str, user: str,
                channel: str, *, container: str = "", image: str = "",
                incident: Incident | None = None) -> Message:
        request, new = self.approvals.request(
            action, namespace, kind, name, user,
            incident.channel if incident and incident.channel else channel,
            container=container, image=image, incident_id=incident.id if incident else "",
            thread_ts=incident.thread_ts if incident and incident.thread_ts else "")
        verb = "Asked for approval of" if new else "Already waiting for approval:"
        return text_message(Mrkdwn("🛂 {} the {} (request {}, expires in {} min).").format(
            verb, request.describe(), code(request.id), int(self.approvals.ttl // 60)))

    # -- alert buttons ------------------------------------------------------------------------

    def incident(self, incident_id: str) -> Incident | None:
        """The incident a button names; None for an id the bot never made (no key is built)."""
        return self.incidents.load(incident_id)

    def button(self, action: str, incident_id: str, user: str, channel: str,
               thread: tuple[str, str] | None = None) -> Message:
        """The alert buttons (and the thread's Retry now); the button's value is only an
        incident id. `thread`: (channel, ts) of the thread the pressed message is in, for an
        alert pressed before its incident records where it was posted."""
        incident = self.incident(incident_id)
        if incident is None:
            return text_message("This alert's incident is no longer in the store.")
        d = incident.diagnosis
        try:
            if action == "quota":
                return self._to_thread(incident, self.quota(None), thread)
            if action == "bundle":
                # in the thread, not ephemeral: a bundle is what the next person is handed,
                # so it belongs with the incident's record, where anyone on call (and whoever
                # it is escalated to) finds it and can link to it; an ephemeral answer is
                # seen by the presser only and is gone on reload
                return self._to_thread(incident, self.bundle(d.namespace, d.pod), thread)
            if action == "verify_secret":
                return self._to_thread(incident, self.verify(d.namespace, d.pod, None), thread)
            if action == "restart":
                return self.request("rollout_restart", d.namespace, d.workload.kind,
                                    d.workload.name, user, channel, incident=incident)
            if action == "retry":  # the cause went away: new pods now, not after back-off
                return self.request("retry", d.namespace, d.workload.kind, d.workload.name,
                                    user, channel, incident=incident)
            if action == "set_image":
                if d.suggested_image is None:
                    return text_message("No registry-confirmed image to set.")
                return self.request("set_image", d.namespace, d.workload.kind, d.workload.name,
                                    user, channel, container=d.container,
                                    image=d.suggested_image, incident=incident)
        except KubeNotFound as exc:
            return text_message(Mrkdwn("⚠️ {} (the pod may have been replaced since the "
                                       "alert).").format(sentence(exc)))
        except KubeError as exc:
            return text_message(Mrkdwn("⚠️ Kubernetes: {}").format(sentence(exc)))
        except (RemediationRefused, SecretError) as exc:
            return text_message(Mrkdwn("🚫 {}").format(sentence(exc)))
        return text_message(Mrkdwn("Unknown action {}.").format(code(action)))

    def _to_thread(self, incident: Incident, message: Message,
                   pressed_in: tuple[str, str] | None = None) -> Message:
        """Answers to alert buttons go into the incident's thread, for everyone on call. The
        incident's record says where that is; until it does (the bot records the alert once
        chat.postMessage has answered, and Slack shows the alert, buttons and all, before
        that), the pressed message's own thread is the same place."""
        text, blocks = message
        where = ((incident.channel, incident.thread_ts)
                 if incident.channel and incident.thread_ts else pressed_in)
        if where is not None:
            self.slack.chat_postMessage(channel=where[0], thread_ts=where[1], text=text,
                                        blocks=blocks)
            return text_message("Posted in the alert's thread.")
        return message


def _verification_line(result: SecretVerification) -> Mrkdwn:
    icon = {"valid": "✅", "unauthorized": "🔑", "forbidden": "⛔",
            "registry_unreachable": "📡", "no_entry_for_registry": "❓"}[result.status.value]
    who = Mrkdwn(" as {}").format(code(result.username)) if result.username else Mrkdwn("")
    used = (Mrkdwn(", used by service account(s) ")
            + Mrkdwn(", ").join(code(a) for a in result.referenced_by)
            if result.referenced_by else Mrkdwn(""))
    notes = Mrkdwn("").join(Mrkdwn("\n   _{}_").format(n) for n in result.notes)
    return Mrkdwn("{} {} for {}{}: *{}* — {}{}{}").format(
        icon, code(f"{result.namespace}/{result.secret}"), code(result.image), who,
        result.status.value, sentence(result.message), used, notes)
