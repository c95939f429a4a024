"""Admission webhook matching (bot/diagnosis/webhooks.py): the apiserver's rules, from
configurations shaped as real ones are (Kyverno, Istio's injector, a registry mirror)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.diagnosis.webhooks import (
    NAMESPACE_NAME_LABEL,
    SelectorError,
    matching_webhooks,
    namespace_labels_or_name,
    selector_matches,
)

SHOP = {NAMESPACE_NAME_LABEL: "shop", "team": "storefront", "env": "prod"}
POD_RULE = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"], "scope": "Namespaced"}


def configuration(name: str, *webhooks: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "webhooks": list(webhooks)}


def webhook(name: str = "w.example.com", **fields: Any) -> dict[str, Any]:
    return {"name": name, "rules": [POD_RULE], **fields}


@pytest.mark.parametrize(("selector", "matches"), [
    (None, True),
    ({}, True),
    ({"matchLabels": {"team": "storefront"}}, True),
    ({"matchLabels": {"team": "payments"}}, False),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}, True),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, False),
    ({"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "NotIn",
                            "values": ["kube-system"]}]}, True),
    ({"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "NotIn",
                            "values": ["shop"]}]}, False),
    # NotIn on an absent label selects (as Kubernetes' labels.Selector does)
    ({"matchExpressions": [{"key": "absent", "operator": "NotIn", "values": ["x"]}]}, True),
    ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "istio-injection", "operator": "Exists"}]}, False),
    ({"matchExpressions": [{"key": "istio-injection", "operator": "DoesNotExist"}]}, True),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, False),
    # every requirement must hold
    ({"matchLabels": {"team": "storefront"},
      "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, False),
])
def test_label_selectors(selector: dict[str, Any] | None, matches: bool) -> None:
    assert selector_matches(selector, SHOP) is matches


def test_an_unknown_operator_is_an_error_not_a_silent_miss() -> None:
    with pytest.raises(SelectorError):
        selector_matches({"matchExpressions": [{"key": "a", "operator": "Gt"}]}, SHOP)


@pytest.mark.parametrize(("rule", "matches"), [
    (POD_RULE, True),
    ({**POD_RULE, "operations": ["UPDATE"]}, True),
    ({**POD_RULE, "operations": ["*"]}, True),
    ({**POD_RULE, "operations": ["DELETE"]}, False),
    ({**POD_RULE, "apiGroups": ["*"], "resources": ["*"]}, True),
    ({**POD_RULE, "resources": ["*/*"]}, True),
    ({**POD_RULE, "apiGroups": ["apps"], "resources": ["deployments"]}, False),
    ({**POD_RULE, "resources": ["pods/exec"]}, False),  # a subresource only
    ({**POD_RULE, "scope": "Cluster"}, False),
    ({k: v for k, v in POD_RULE.items() if k != "scope"}, True),  # scope defaults to *
])
def test_rules_that_see_pods(rule: dict[str, Any], matches: bool) -> None:
    found = matching_webhooks([configuration("c", {"name": "w", "rules": [rule]})],
                              mutating=True, namespace_labels=SHOP)
    assert bool(found) is matches


def test_names_failure_policy_default_and_kind() -> None:
    found = matching_webhooks(
        [configuration("image-mirror", webhook("rewrite.mirror.corp.example",
                                               failurePolicy="Ignore")),
         configuration("kyverno", webhook("validate.kyverno.svc-fail"))],
        mutating=False, namespace_labels=SHOP)
    assert [(w.configuration, w.name, w.failure_policy, w.mutating) for w in found] == [
        ("image-mirror", "rewrite.mirror.corp.example", "Ignore", False),
        ("kyverno", "validate.kyverno.svc-fail", "Fail", False)]  # v1's default is Fail


def test_namespace_selector_excludes_other_namespaces() -> None:
    istio = configuration("istio-sidecar-injector", webhook(
        "namespace.sidecar-injector.istio.io",
        namespaceSelector={"matchLabels": {"istio-injection": "enabled"}}))
    assert matching_webhooks([istio], mutating=True, namespace_labels=SHOP) == []
    labelled = {**SHOP, "istio-injection": "enabled"}
    assert len(matching_webhooks([istio], mutating=True, namespace_labels=labelled)) == 1


def test_object_selector_is_evaluated_on_the_pod_or_noted() -> None:
    config = configuration("c", webhook(objectSelector={"matchLabels": {"app": "web"}}))
    assert matching_webhooks([config], mutating=True, namespace_labels=SHOP,
                             pod_labels={"app": "api"}) == []
    [found] = matching_webhooks([config], mutating=True, namespace_labels=SHOP,
                                pod_labels={"app": "web"})
    assert "objectSelector matches" in found.notes[0]
    [unknown] = matching_webhooks([config], mutating=True, namespace_labels=SHOP)
    assert "objectSelector" in unknown.notes[0]


def test_cel_match_conditions_are_noted_not_guessed() -> None:
    config = configuration("c", webhook(matchConditions=[
        {"name": "not-system", "expression": "!request.userInfo.username.startsWith('system:')"}]))
    [found] = matching_webhooks([config], mutating=True, namespace_labels=SHOP)
    assert "matchConditions" in found.notes[0]


def test_unreadable_namespace_labels_fall_back_to_the_name_label() -> None:
    assert namespace_labels_or_name("shop", None) == {NAMESPACE_NAME_LABEL: "shop"}
    assert namespace_labels_or_name("shop", {"a": "b"}) == {"a": "b"}
