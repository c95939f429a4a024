"""The fixes the Slack buttons run once a person approved them: exactly what
``kubectl rollout restart`` and ``kubectl set image`` send, and nothing else.

Both are strategic-merge PATCHes (``application/strategic-merge-patch+json``) of a workload's
pod template:

* rollout restart (Deployment, StatefulSet, DaemonSet), as kubectl's
  ``polymorphichelpers/objectrestarter.go`` builds it::

    {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-11-28T15:00:00Z"}}}}}

* set image (Deployment, StatefulSet, DaemonSet at ``spec.template.spec``, CronJob at
  ``spec.jobTemplate.spec.template.spec``); ``containers`` / ``initContainers`` merge by
  ``name``, so only the named container's image changes::

    {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:latest"}]}}}}

Everything that can be checked is checked before the PATCH, and a refusal
(``RemediationRefused``) says in plain words why and what to do instead. API failures surface
as ``bot.kube.client.KubeError`` subclasses (``KubeForbidden`` when the bot may not patch).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from bot.diagnosis.fixes import remediation_command
from bot.diagnosis.imageref import InvalidImageReference, parse_image
from bot.diagnosis.names import is_dns1123_label, is_dns1123_subdomain
from bot.diagnosis.owners import controller_of
from bot.kube.client import KubeClient, KubeError

RESTARTED_AT: Final = "kubectl.kubernetes.io/restartedAt"

#: kubectl's spellings (singular, plural, short name; any case) -> Kind
_KINDS: Final[dict[str, str]] = {
    **dict.fromkeys(("deployment", "deployments", "deploy"), "Deployment"),
    **dict.fromkeys(("statefulset", "statefulsets", "sts"), "StatefulSet"),
    **dict.fromkeys(("daemonset", "daemonsets", "ds"), "DaemonSet"),
    **dict.fromkeys(("cronjob", "cronjobs", "cj"), "CronJob"),
    **dict.fromkeys(("replicaset", "replicasets", "rs"), "ReplicaSet"),
    **dict.fromkeys(("job", "jobs"), "Job"),
    **dict.fromkeys(("pod", "pods", "po"), "Pod"),
}
_GROUPS: Final = {"Deployment": "apps", "StatefulSet": "apps", "DaemonSet": "apps",
                  "ReplicaSet": "apps", "CronJob": "batch", "Job": "batch", "Pod": ""}
RESTARTABLE: Final = ("Deployment", "StatefulSet", "DaemonSet")
#: What "Retry now" acts on (issue 12): a workload's pods are replaced by a rollout restart,
#: a bare pod (no controller) is deleted.
RETRYABLE: Final = (*RESTARTABLE, "Pod")
IMAGE_SETTABLE: Final = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")


class RemediationRefused(ValueError):
    """The action was not attempted; the message says why, in words a person can act on."""


#: Why nothing is patched in a read-only install.
READ_ONLY = ("this install is read-only: remediation is disabled (REMEDIATION_ENABLED=false, "
             "the read-only profile)")


def read_only_refusal(action: str, namespace: str, kind: str, name: str,
                      container: str = "", image: str = "") -> RemediationRefused:
    """The refusal of a remediation in a read-only install, with the command to run instead
    (built by bot/diagnosis/fixes.py, the one place shell commands are quoted)."""
    command = remediation_command(action, namespace, resolve_kind(kind), name, container,
                                  image)
    return RemediationRefused(f"{READ_ONLY}; run the command yourself: {command}")


@dataclass(frozen=True)
class RemediationResult:
    """What an action changed, for the audit trail and the Slack thread."""

    action: str  # "rollout_restart" | "set_image" | "retry"
    namespace: str
    kind: str  # the Kind: "Deployment", "StatefulSet", "DaemonSet", "CronJob"
    name: str
    summary: str  # one line, e.g. "deployment/web restarted (generation 7 → 8, ...)"
    generation: int | None  # metadata.generation after the change
    previous_image: str | None
    new_image: str | None
    #: what a person may still have to do (StatefulSet pods stuck on a broken revision,
    #: updateStrategy OnDelete); None when the controller replaces the pods by itself
    note: str | None = None


# -- public actions ---------------------------------------------------------------------------
def rollout_restart(kube: KubeClient, namespace: str, kind: str, name: str, *,
                    allowed_namespaces: Sequence[str] | None = None,
                    now: dt.datetime | None = None) -> RemediationResult:
    """``kubectl rollout restart KIND/NAME -n NAMESPACE``: stamp the pod template with
    ``kubectl.kubernetes.io/restartedAt`` so the controller replaces every pod."""
    kind = _target(kube, "rollout_restart", namespace, kind, name, allowed_namespaces)
    obj = kube.read_workload(namespace, kind, name)
    if kind == "Deployment" and (obj.get("spec") or {}).get("paused"):
        raise RemediationRefused(
            f"{_ref(kind, name)} is paused and a paused deployment cannot be restarted: run "
            f"`kubectl rollout resume deployment/{name} -n {namespace}` first")
    stamp = _rfc3339(now or dt.datetime.now(dt.UTC))
    template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (template_meta.get("annotations") or {}).get(RESTARTED_AT) == stamp:
        raise RemediationRefused(f"{_ref(kind, name)} was already restarted at {stamp}")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    before = _generation(obj)
    after_obj = kube.patch_workload(namespace, kind, name, body)
    after = _generation(after_obj)
    return RemediationResult(
        action="rollout_restart", namespace=namespace, kind=kind, name=name,
        summary=f"{_ref(kind, name)} restarted ({_generations(before, after)}"
                f"restartedAt {stamp})",
        generation=after, previous_image=None, new_image=None,
        note=_rollout_note(after_obj, kind, name, namespace))


def retry_now(kube: KubeClient, namespace: str, kind: str, name: str, *,
              allowed_namespaces: Sequence[str] | None = None,
              now: dt.datetime | None = None) -> RemediationResult:
    """"Retry now" after the cause was fixed: new pods pull at once instead of after the
    kubelet's back-off. A Deployment, StatefulSet or DaemonSet gets a rollout restart (the
    controller replaces its pods); a bare pod is deleted (``kubectl delete pod``), since
    nothing else resets its back-off; nothing re-creates it, which the request says."""
    kind = _target(kube, "retry", namespace, kind, name, allowed_namespaces)
    if kind == "Pod":
        kube.delete_pod(namespace, name)
        return RemediationResult(
            action="retry", namespace=namespace, kind=kind, name=name,
            summary=f"pod/{name} deleted (re-create it from its manifest: nothing else does)",
            generation=None, previous_image=None, new_image=None)
    result = rollout_restart(kube, namespace, kind, name,
                             allowed_namespaces=allowed_namespaces, now=now)
    return replace(result, action="retry")


def set_image(kube: KubeClient, namespace: str, kind: str, name: str, container: str,
              image: str, *, allowed_namespaces: Sequence[str] | None = None
              ) -> RemediationResult:
    """``kubectl set image KIND/NAME CONTAINER=IMAGE -n NAMESPACE`` for one container (or
    init container) of the pod template."""
    kind = _target(kube, "set_image", namespace, kind, name, allowed_namespaces)
    if not is_dns1123_label(container):
        raise RemediationRefused(
            f"container name {container!r} is not a valid DNS-1123 label (lower-case letters, "
            "digits and '-', at most 63 characters)")
    new_image = image.strip()
    if not new_image:
        raise RemediationRefused("no image given")
    try:
        parse_image(new_image)
    except InvalidImageReference as exc:
        raise RemediationRefused(f"not a valid image reference: {exc}") from None

    obj = kube.read_workload(namespace, kind, name)
    pod_spec = _pod_template_spec(obj, kind)
    list_key, current = _find_container(pod_spec, container)
    if list_key is None or current is None:
        raise RemediationRefused(
            f"{_ref(kind, name)} has no container {container!r}: "
            f"{_describe_containers(pod_spec)}")
    previous = str(current.get("image") or "") or None
    label = "init container" if list_key == "initContainers" else "container"
    if previous == new_image:
        raise RemediationRefused(
            f"{label} {container} of {_ref(kind, name)} already uses {new_image}: nothing to "
            "change (a rollout restart pulls it again)")

    patch: dict[str, Any] = {list_key: [{"name": container, "image": new_image}]}
    body: dict[str, Any] = {"spec": {"template": {"spec": patch}}}
    if kind == "CronJob":
        body = {"spec": {"jobTemplate": body}}
    before = _generation(obj)
    after_obj = kube.patch_workload(namespace, kind, name, body)
    after = _generation(after_obj)
    gens = _generations(before, after).removesuffix(", ")
    return RemediationResult(
        action="set_image", namespace=namespace, kind=kind, name=name,
        summary=f"{_ref(kind, name)} {label} {container}: {previous or '(none)'} → "
                f"{new_image}" + (f" ({gens})" if gens else ""),
        generation=after, previous_image=previous, new_image=new_image,
        note=_rollout_note(after_obj, kind, name, namespace))


def resolve_kind(kind: str) -> str:
    """``deploy`` / ``Deployments`` / ``deployment.apps`` -> ``Deployment``; refuses others."""
    spelled = kind.strip().lower()
    base, _, group = spelled.partition(".")
    canonical = _KINDS.get(base)
    if canonical is None or (group and group != _GROUPS[canonical]):
        known = "deployment (deploy), statefulset (sts), daemonset (ds), cronjob (cj)"
        raise RemediationRefused(f"unknown kind {kind!r}: the bot acts on {known}")
    return canonical


# -- checks before any API call ---------------------------------------------------------------
def check_target(action: str, namespace: str, kind: str, name: str, *,
                 allowed_namespaces: Sequence[str] | None = None) -> str:
    """Whether ``action`` ("rollout_restart" or "set_image") may ever run on this target,
    without asking the API (for the approval request, before anything is posted). Returns the
    Kind; raises RemediationRefused with the reason. The actions check again, and for a Job or
    a ReplicaSet read its owner to name the object to act on instead."""
    canonical = _validate(namespace, kind, name, allowed_namespaces)
    if canonical == "Pod" and action != "retry":
        raise RemediationRefused(_POD_REFUSAL.format(name=name))
    if canonical == "Job":
        raise RemediationRefused(_job_refusal(namespace, name, None))
    if canonical == "ReplicaSet":
        raise RemediationRefused(_replica_set_refusal(name, None, _verb(action)))
    return _check_action(action, canonical, name)


def _validate(namespace: str, kind: str, name: str,
              allowed_namespaces: Sequence[str] | None) -> str:
    canonical = resolve_kind(kind)
    if not is_dns1123_label(namespace):
        raise RemediationRefused(
            f"namespace {namespace!r} is not a valid DNS-1123 label (lower-case letters, "
            "digits and '-', at most 63 characters)")
    if not is_dns1123_subdomain(name):
        raise RemediationRefused(
            f"{canonical.lower()} name {name!r} is not a valid DNS-1123 subdomain (lower-case "
            "letters, digits, '-' and '.', at most 253 characters)")
    # WATCH_NAMESPACES empty means the whole cluster, as for the watcher
    if allowed_namespaces and namespace not in allowed_namespaces:
        raise RemediationRefused(
            f"namespace {namespace!r} is outside WATCH_NAMESPACES "
            f"({', '.join(allowed_namespaces)}): the bot does not act there")
    return canonical


def _check_action(action: str, kind: str, name: str) -> str:
    if action == "rollout_restart":
        if kind not in RESTARTABLE:  # CronJob
            raise RemediationRefused(
                f"{_ref(kind, name)} cannot be restarted: a CronJob runs no long-lived pods "
                "(its next run starts fresh ones); to fix its image use set image")
    elif action == "set_image":
        if kind not in IMAGE_SETTABLE:
            raise RemediationRefused(f"the bot does not set images on {_ref(kind, name)}")
    elif action == "retry":
        if kind not in RETRYABLE:  # CronJob
            raise RemediationRefused(
                f"{_ref(kind, name)} cannot be retried by the bot: a CronJob's next run "
                "starts fresh pods")
    else:
        raise RemediationRefused(f"unknown remediation {action!r}: the bot can "
                                 "rollout_restart, set_image or retry")
    return kind


def _verb(action: str) -> str:
    return "set image on" if action == "set_image" else "restart"


def _target(kube: KubeClient, action: str, namespace: str, kind: str, name: str,
            allowed_namespaces: Sequence[str] | None) -> str:
    """check_target, with the owner of a Job or ReplicaSet read to name the object to act on
    instead. Those reads are the only API calls a refusal makes."""
    canonical = _validate(namespace, kind, name, allowed_namespaces)
    if canonical == "Job":
        owner = _owner(kube, namespace, "Job", name)
        raise RemediationRefused(_job_refusal(namespace, name, owner))
    if canonical == "ReplicaSet":
        owner = _owner(kube, namespace, "ReplicaSet", name)
        raise RemediationRefused(_replica_set_refusal(name, owner, _verb(action)))
    return check_target(action, namespace, kind, name, allowed_namespaces=allowed_namespaces)


_POD_REFUSAL: Final = ("pod/{name}: a bare pod is not managed by a controller: fix its "
                       "manifest and re-create it")


def _owner(kube: KubeClient, namespace: str, kind: str, name: str) -> Mapping[str, Any] | None:
    """The controller owning the object, None when it has none or cannot be read."""
    try:
        obj = kube.read_workload(namespace, kind, name)
    except KubeError:
        return None
    return controller_of(obj.get("metadata") or {})


def _job_refusal(namespace: str, name: str, owner: Mapping[str, Any] | None) -> str:
    reason = f"job/{name}: a Job's pod template is immutable (the API server rejects changes)"
    if owner and owner.get("kind") == "CronJob":
        return (f"{reason}. Act on cronjob/{owner.get('name')} instead (its next run uses the "
                f"fix), then delete this job: `kubectl delete job {name} -n {namespace}`")
    return (f"{reason}: act on the CronJob that created it, or fix the Job's manifest and "
            "re-create it (`kubectl replace --force -f ...`)")


def _replica_set_refusal(name: str, owner: Mapping[str, Any] | None, verb: str) -> str:
    if owner and owner.get("kind") == "Deployment":
        return (f"replicaset/{name} is managed by deployment/{owner.get('name')}, which would "
                f"undo the change: {verb} deployment/{owner.get('name')} instead")
    return (f"replicaset/{name}: the bot does not change ReplicaSets (a Deployment would undo "
            "the change, and a ReplicaSet does not replace its pods when its template "
            f"changes): {verb} the Deployment that owns it instead")


# -- helpers ----------------------------------------------------------------------------------
def _ref(kind: str, name: str) -> str:
    return f"{kind.lower()}/{name}"


def _rfc3339(when: dt.datetime) -> str:
    """Go's ``time.Now().Format(time.RFC3339)`` in UTC: second precision, ``Z``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generation(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("generation")
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _generations(before: int | None, after: int | None) -> str:
    """``"generation 7 → 8, "`` (or empty when the API reports none)."""
    if after is None:
        return ""
    if before is None or before == after:
        return f"generation {after}, "
    return f"generation {before} → {after}, "


def _pod_template_spec(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _find_container(pod_spec: Mapping[str, Any], name: str
                    ) -> tuple[str | None, Mapping[str, Any] | None]:
    for key in ("containers", "initContainers"):
        for c in pod_spec.get(key) or []:
            if isinstance(c, Mapping) and c.get("name") == name:
                return key, c
    return None, None


def _describe_containers(pod_spec: Mapping[str, Any]) -> str:
    def names(key: str) -> list[str]:
        return [str(c.get("name")) for c in pod_spec.get(key) or [] if isinstance(c, Mapping)]

    containers, inits = names("containers"), names("initContainers")
    if not containers and not inits:
        return "its pod template has no containers"
    text = f"its containers are {', '.join(containers) or '(none)'}"
    if inits:
        text += f"; its init containers are {', '.join(inits)}"
    return text


def _rollout_note(obj: Mapping[str, Any], kind: str, name: str, namespace: str) -> str | None:
    """What the controller will not do by itself after a template change."""
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
    if kind in ("StatefulSet", "DaemonSet") and strategy == "OnDelete":
        return (f"{_ref(kind, name)} uses updateStrategy OnDelete: its pods change only when "
                f"deleted (`kubectl delete pod ... -n {namespace}`)")
    if kind == "StatefulSet":
        return (f"a StatefulSet waits for a broken pod to become Ready before replacing it: "
                f"if pods of {_ref(kind, name)} stay in ImagePullBackOff, delete them so they "
                f"are re-created from the new template (`kubectl delete pod ... -n "
                f"{namespace}`)")
    return None
