"""Which admission webhooks see a pod of a namespace: the apiserver's matching rules, pure.

Why: a mutating webhook (a registry mirror, Kyverno, OPA Gatekeeper's mutation) can rewrite a
pod's image after the workload asked for another one, and a failing validating webhook blocks
pods; neither shows in the pod's events. The field guide's "When to escalate" list asks whether
one might be interfering, so the bundle names every webhook whose rules match pods in the
namespace, and the `image_rewritten` finding names the mutating ones.

The matching follows admissionregistration.k8s.io/v1 as the apiserver applies it
(k8s.io/apiserver/pkg/admission/plugin/webhook/predicates):

* a rule matches pods when its operations include CREATE or UPDATE (or `*`), its apiGroups
  `""` (or `*`), its resources `pods` (or `*`, `*/*`), and its scope is not `Cluster`;
* `namespaceSelector` (empty or absent: every namespace) is a label selector on the
  namespace's labels: `matchLabels` and `matchExpressions` with In, NotIn, Exists,
  DoesNotExist, all ANDed;
* `objectSelector` is evaluated against the pod's labels when they are known (on CREATE the
  object is the new pod), and noted either way;
* `matchConditions` are CEL: not evaluated here, noted.

Input is the raw JSON of the configurations (as listed); nothing here calls anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The label the apiserver sets on every namespace (since 1.21): when the namespace's labels
#: cannot be read, a selector can still be matched on the name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

_POD_OPERATIONS = frozenset({"CREATE", "UPDATE", "*"})
_POD_RESOURCES = frozenset({"pods", "*", "*/*"})


@dataclass(frozen=True)
class MatchedWebhook:
    """One webhook (of a configuration) whose rules match pods in a namespace."""

    configuration: str
    name: str
    mutating: bool
    #: Fail (the v1 default) or Ignore: with Fail, an unreachable webhook blocks pod creation
    failure_policy: str
    #: what could not be decided here (an objectSelector on unknown labels, CEL conditions)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"configuration": self.configuration, "name": self.name,
                "mutating": self.mutating, "failure_policy": self.failure_policy,
                "notes": list(self.notes)}


class SelectorError(ValueError):
    """A selector the apiserver would have refused; such a webhook is reported as matching."""


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels. Empty or absent selects everything.

    Raises SelectorError on an operator or shape the apiserver would refuse."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(str(key)) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        if not isinstance(expression, Mapping):
            raise SelectorError("a matchExpressions entry is not an object")
        key = str(expression.get("key") or "")
        operator = str(expression.get("operator") or "")
        values = [str(v) for v in expression.get("values") or []]
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        elif operator == "DoesNotExist":
            ok = not present
        else:
            raise SelectorError(f"unknown selector operator {operator!r}")
        if not ok:
            return False
    return True


def _rule_matches_pods(rule: Mapping[str, Any]) -> bool:
    operations = {str(o) for o in rule.get("operations") or []}
    groups = {str(g) for g in rule.get("apiGroups") or []}
    resources = {str(r) for r in rule.get("resources") or []}
    scope = str(rule.get("scope") or "*")
    return (bool(operations & _POD_OPERATIONS) and bool(groups & {"", "*"})
            and bool(resources & _POD_RESOURCES) and scope != "Cluster")


def _webhook_match(webhook: Mapping[str, Any], namespace_labels: Mapping[str, str],
                   pod_labels: Mapping[str, str] | None) -> tuple[bool, list[str]]:
    """(matches, notes) for one webhook entry."""
    notes: list[str] = []
    if not any(isinstance(r, Mapping) and _rule_matches_pods(r)
               for r in webhook.get("rules") or []):
        return False, notes
    try:
        if not selector_matches(webhook.get("namespaceSelector"), namespace_labels):
            return False, notes
    except SelectorError as exc:
        notes.append(f"namespaceSelector not understood ({exc}): listed as matching")
    object_selector = webhook.get("objectSelector")
    if object_selector:
        if pod_labels is None:
            notes.append("has an objectSelector: matches only pods with the labels it selects")
        else:
            try:
                if not selector_matches(object_selector, pod_labels):
                    return False, notes
                notes.append("objectSelector matches this pod's labels")
            except SelectorError as exc:
                notes.append(f"objectSelector not understood ({exc}): listed as matching")
    if webhook.get("matchConditions"):
        notes.append("has matchConditions (CEL), not evaluated: it may skip this pod")
    return True, notes


def matching_webhooks(configurations: Iterable[Mapping[str, Any]], *, mutating: bool,
                      namespace_labels: Mapping[str, str],
                      pod_labels: Mapping[str, str] | None = None) -> list[MatchedWebhook]:
    """Every webhook of these (Mutating or Validating) configurations that matches pods in a
    namespace with `namespace_labels` (and, when given, a pod with `pod_labels`)."""
    found: list[MatchedWebhook] = []
    for configuration in configurations:
        name = str((configuration.get("metadata") or {}).get("name") or "")
        for webhook in configuration.get("webhooks") or []:
            if not isinstance(webhook, Mapping):
                continue
            matches, notes = _webhook_match(webhook, namespace_labels, pod_labels)
            if matches:
                found.append(MatchedWebhook(
                    configuration=name, name=str(webhook.get("name") or ""), mutating=mutating,
                    failure_policy=str(webhook.get("failurePolicy") or "Fail"),
                    notes=tuple(notes)))
    return found


def namespace_labels_or_name(namespace: str,
                             labels: Mapping[str, str] | None) -> dict[str, str]:
    """The namespace's labels, or (not readable) the one label the apiserver always sets."""
    if labels is not None:
        return {str(k): str(v) for k, v in labels.items()}
    return {NAMESPACE_NAME_LABEL: namespace}


def mutating_names(webhooks: Sequence[MatchedWebhook]) -> tuple[str, ...]:
    """`configuration/webhook` of the mutating ones, the form the finding names them by."""
    return tuple(f"{w.configuration}/{w.name}" for w in webhooks if w.mutating)
