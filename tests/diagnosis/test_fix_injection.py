"""Option injection in fix commands (issue 8, defect 10).

Quoting stops the shell, not the tool: a pull-secret name `--kubeconfig=/tmp/x` in a kubelet
warning, quoted, is still an option to kubectl. Every name and image below comes from the
cluster (pod spec, kubelet messages, owner references, the registry) and starts with `-`; no
word of any fix command that carries one may be read as an option by the tool that gets it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli.main import EXIT_OK, main
from bot.diagnosis.causes import Cause, Finding
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts, PullSecretInfo, RegistryFacts, WorkloadRef
from bot.diagnosis.fixes import FixContext, build_fixes
from bot.diagnosis.imageref import try_parse_image
from bot.diagnosis.model import Fix
from tests.diagnosis.kubelet import NOW, event, pod, pull_failure
from tests.diagnosis.test_engine import UNAUTHORIZED

pytestmark = [pytest.mark.security]

MARK = "pwn"  # every hostile value carries it (any case)
SECRET = "--kubeconfig=/tmp/PWN-secret"
CORPUS = [entry for name in ("kubelet_messages.yaml", "kubelet_messages_public.yaml")
          for entry in yaml.safe_load((Path(__file__).parents[1] / "data" / name).read_text())]
_SEPARATORS = {"|", "||", "&&", ";", "(", ")", "<", ">", "<<"}


def _segments(command: str) -> list[list[str]]:
    """The simple commands of a fix (pipes, &&, $(…) split apart); heredoc bodies and
    config-file snippets (the fix for a proxy is a systemd drop-in, not a command) skipped."""
    first = command.split("<<'EOF'")[0] if "<<'EOF'" in command else command
    if first.startswith(("[", "#", "apiVersion")):
        return []
    lexer = shlex.shlex(first, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for word in lexer:
        if word in _SEPARATORS or set(word) <= set("|&;()<>"):
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s]


def _option_name(word: str) -> str:
    return word.split("=", 1)[0]


def _options(fix: Fix) -> list[str]:
    """The words a tool parses as options: those starting with "-" before `--`."""
    found = []
    for words in _segments(fix.command):
        end = words.index("--") if "--" in words else len(words)
        found += [w for w in words[:end] if w.startswith("-")]
    return found


def _benign_options() -> set[str]:
    """Every option name the bot itself writes, over every cause and context shape."""
    names: set[str] = set()
    for image in ("nginx:1.27", "registry.internal/a/b:1", "123456789012.dkr.ecr.us-east-1."
                  "amazonaws.com/a/b:1", "europe-docker.pkg.dev/p/r/a:1", "Bad Image"):
        for extra in _CONTEXT_SHAPES:
            ctx = FixContext(namespace="shop", workload=WorkloadRef("Deployment", "web"),
                             container="web", image=image, ref=try_parse_image(image),
                             node="worker-1", findings=frozenset(Finding), **extra)
            for cause in Cause:
                for fix in build_fixes(cause, ctx):
                    names.update(_option_name(w) for w in _options(fix))
    return names


_CONTEXT_SHAPES: list[dict[str, Any]] = [
    {"missing_secret": "regcred"}, {"wrong_registry_secret": "regcred"},
    {"unreferenced_secret": "regcred"},
    {"suggested_image": "nginx:1.28", "pin_digest": "sha256:" + "0" * 64},
    {"has_registry_secret": True, "pull_policy": "Always", "plain_http": True,
     "repository_uncertain": True},
]


def _injected(fix: Fix) -> list[str]:
    """Option words that came from cluster text: an option name the bot never writes, or one
    carrying the hostile mark."""
    return [w for w in _options(fix)
            if _option_name(w) not in BOT_OPTIONS or MARK in _option_name(w).lower()]


def _assert_safe(fixes: tuple[Fix, ...] | list[Fix]) -> None:
    assert fixes
    for fix in fixes:
        assert _injected(fix) == [], fix.command


def test_the_checker_catches_what_the_old_commands_did() -> None:
    assert "--kubeconfig" not in BOT_OPTIONS and {"-n", "--docker-server"} <= BOT_OPTIONS
    old = Fix("t", "kubectl create secret docker-registry '--kubeconfig=/tmp/x' "
                   "--docker-server=x -n shop")
    assert _injected(old) == ["--kubeconfig=/tmp/x"]
    assert _injected(Fix("t", "docker pull -PWN")) == ["-PWN"]
    assert _injected(Fix("t", "kubectl delete deployment/web -n -PWN-ns")) == ["-PWN-ns"]
    assert _injected(Fix("t", "docker pull -- -PWN")) == []
    assert _injected(Fix("t", "sudo crictl images | grep -PWN")) == ["-PWN"]


def test_secret_name_from_a_kubelet_warning_is_refused_and_explained() -> None:
    image = "registry.internal/team/billing:v2.1"
    events = [*pull_failure(image, UNAUTHORIZED),
              event("FailedToRetrieveImagePullSecret", f"Unable to retrieve some image pull "
                    f"secrets ({SECRET}); attempting to pull the image may not succeed.",
                    container=None)]
    p = pod(image, pull_secrets=(SECRET,))
    [d] = diagnose(PodFacts(pod=p, events=events, now=NOW)).diagnoses
    assert Finding.PULL_SECRET_MISSING in d.findings
    _assert_safe(d.fixes)
    create = d.fixes[0]
    assert create.command.startswith("kubectl create secret docker-registry '<secret-name>' ")
    assert "not a valid Kubernetes name" in create.title and "<secret-name>" in create.title
    assert all(SECRET not in f.command for f in d.fixes)


def _hostile_pod(image: str, message: str) -> dict[str, Any]:
    p = pod(image, name="-PWN-pod", namespace="-PWN-ns", container="-PWN-c",
            waiting_reason="ErrImagePull", waiting_message=message,
            pull_secrets=("-PWN-s1", SECRET), owner=("-PWN-Kind", "-PWN-owner"),
            node="-PWN-node", service_account="--PWN-sa")
    return p


@pytest.mark.parametrize("entry", [e for e in CORPUS if e.get("cause")],
                         ids=lambda e: f"{e['cause']}:{e['source'][:40]}")
def test_every_cause_from_real_kubelet_texts_with_hostile_names(entry: dict[str, Any]) -> None:
    """Each corpus text as the waiting message of a pod whose every name is hostile."""
    for image in ("registry.internal/team/app:1.0", "-PWN-image:1", "--pwn=/x"):
        facts = PodFacts(pod=_hostile_pod(image, entry["text"]), now=NOW,
                         referenced_secrets={}, service_account_pull_secrets=("-PWN-sa-s",),
                         namespace_pull_secrets=[PullSecretInfo("-PWN-ns-s", "x",
                                                                ("registry.internal",))],
                         registry={image: RegistryFacts(
                             suggested_image="-PWN-suggested:2", digest="--PWN-digest",
                             suggestion_kind=Finding.TAG_SUGGESTION)})
        for d in diagnose(facts).diagnoses:
            _assert_safe(d.fixes)


BOT_OPTIONS = _benign_options()


def _hostile_context(image: str, **kw: Any) -> FixContext:
    return FixContext(
        namespace="-PWN-ns", workload=WorkloadRef("-PWN-Kind", "-PWN-name"),
        container="--PWN-c", image=image, ref=try_parse_image(image), node="-PWN-node",
        service_account="-PWN-sa", service_account_pull_secrets=("-PWN-s", "ok"),
        findings=frozenset(Finding), **kw)


@pytest.mark.parametrize("cause", list(Cause), ids=lambda c: c.value)
@pytest.mark.parametrize("image", ["nginx:1.27", "123456789012.dkr.ecr.us-east-1.amazonaws.com/"
                                   "a/b:1", "europe-docker.pkg.dev/proj/repo/app:1",
                                   "-PWN:1", "--PWN=x"])
@pytest.mark.parametrize("secrets", [
    {"missing_secret": SECRET},
    {"wrong_registry_secret": "-PWN-wrong"},
    {"unreferenced_secret": "-PWN-unref"},
    {"suggested_image": "-PWN-suggested:1", "pin_digest": "--PWN-digest"},
    {"has_registry_secret": True, "pull_policy": "Always", "plain_http": True,
     "repository_uncertain": True},
])
def test_every_fix_builder_with_hostile_context(cause: Cause, image: str,
                                                secrets: dict[str, Any]) -> None:
    fixes = build_fixes(cause, _hostile_context(image, **secrets))
    _assert_safe(fixes)
    for fix in fixes:
        for placeholder in ("<namespace>", "<container>", "<secret-name>", "<node>", "<kind>",
                            "<service-account>", "<workload-name>", "<listed-secret-name>"):
            if placeholder in fix.command:
                assert "not a valid Kubernetes name" in fix.title, fix


def test_valid_names_are_used_as_they_are() -> None:
    ctx = FixContext(namespace="shop", workload=WorkloadRef("Deployment", "web"),
                     container="web", image="nginx:lates", ref=try_parse_image("nginx:lates"),
                     missing_secret="regcred.v2", node="worker-1.example")
    fixes = build_fixes(Cause.AUTH_REQUIRED, ctx)
    assert fixes[0].command == ("kubectl create secret docker-registry regcred.v2 "
                                "--docker-server=https://index.docker.io/v1/ "
                                "--docker-username='<username>' --docker-password='<token>' "
                                "-n shop")
    assert "not a valid" not in " ".join(f.title for f in fixes)


def test_offline_files_with_hostile_names_through_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = "registry.internal/team/billing:v2.1"
    p = _hostile_pod(image, "")
    del p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    events = {"kind": "List", "items": [
        *pull_failure(image, UNAUTHORIZED, pod_name="-PWN-pod"),
        event("FailedToRetrieveImagePullSecret", f"Unable to retrieve some image pull secrets "
              f"(-PWN-s1, {SECRET}); attempting to pull the image may not succeed.",
              container=None, pod_name="-PWN-pod")]}
    for item in events["items"]:
        item["involvedObject"]["namespace"] = item["metadata"]["namespace"] = "-PWN-ns"
        item["involvedObject"]["uid"] = "uid--PWN-pod"
        if "fieldPath" in item["involvedObject"]:
            item["involvedObject"]["fieldPath"] = "spec.containers{-PWN-c}"
    (tmp_path / "pod.json").write_text(json.dumps(p))
    (tmp_path / "events.json").write_text(json.dumps(events))
    assert main(["diagnose", "--pod-json", str(tmp_path / "pod.json"), "--events-json",
                 str(tmp_path / "events.json"), "-o", "json"]) == EXIT_OK
    [d] = json.loads(capsys.readouterr().out)["diagnoses"]
    assert d["cause"] == "auth_required" and "pull_secret_missing" in d["findings"]
    _assert_safe([Fix(f["title"], f["command"]) for f in d["fixes"]])
