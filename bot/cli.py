"""`python -m bot` / `imagepull-bot`: the command line.

Exit codes are a contract for scripts: 0 diagnosed (or no pull problem), 2 bad arguments or
input, 3 Kubernetes API unreachable or forbidden.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.diagnosis.engine import diagnose
from bot.diagnosis.model import PodDiagnosis
from bot.kube import KubeClient, KubeError, KubeNotFound
from bot.offline import InputError, facts_from_files
from bot.render import render_text

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_KUBE = 3

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


class UsageError(ValueError):
    """Bad command-line input; the message is shown as is."""


def parse_pod_ref(value: str) -> tuple[str, str]:
    """`NAMESPACE/POD`, validated as Kubernetes validates them, before any API call."""
    namespace, sep, pod = value.partition("/")
    if not sep or not namespace or not pod:
        raise UsageError(f"expected NAMESPACE/POD, got {value!r}")
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        raise UsageError(f"namespace {namespace!r} is not a valid DNS-1123 label "
                         "(lower-case letters, digits and '-', at most 63 characters)")
    if len(pod) > 253 or not _DNS1123_SUBDOMAIN.match(pod):
        raise UsageError(f"pod name {pod!r} is not a valid DNS-1123 subdomain "
                         "(lower-case letters, digits, '-' and '.', at most 253 characters)")
    return namespace, pod


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagepull-bot",
        description="Explain Kubernetes image-pull failures and the exact command that fixes them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    diag = sub.add_parser("diagnose", help="diagnose one pod, live or from kubectl JSON files")
    diag.add_argument("pod", nargs="?", metavar="NAMESPACE/POD",
                      help="the pod to diagnose through the Kubernetes API")
    diag.add_argument("--pod-json", type=Path, metavar="FILE",
                      help="offline: `kubectl get pod -o json` output (a Pod or a List)")
    diag.add_argument("--events-json", type=Path, metavar="FILE",
                      help="offline: `kubectl get events -o json` output (a List or one Event)")
    diag.add_argument("--output", "-o", choices=("text", "json"), default="text")
    diag.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, "
                      "or in-cluster)")
    diag.add_argument("--context", help="kubeconfig context to use")

    demo = sub.add_parser("demo", help="run the bot against the built-in scenario cluster")
    demo.add_argument("--output", "-o", choices=("text", "json"), default="text")
    demo.add_argument("scenarios", nargs="*", help="scenario ids (default: all)")
    return parser


def _print_results(results: Sequence[PodDiagnosis], output: str, as_list: bool) -> None:
    if output == "json":
        payload = [r.to_json() for r in results] if as_list else results[0].to_json()
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(render_text(r) for r in results), end="")


def run_diagnose(args: argparse.Namespace) -> int:
    if args.pod_json is None and args.events_json is not None:
        raise UsageError("--events-json needs --pod-json")
    if args.pod_json is not None:
        if args.pod:
            raise UsageError("give either NAMESPACE/POD or --pod-json, not both")
        offline = facts_from_files(args.pod_json, args.events_json)
        _print_results([diagnose(f) for f in offline], args.output, as_list=len(offline) > 1)
        return EXIT_OK
    if not args.pod:
        raise UsageError("give NAMESPACE/POD (live) or --pod-json FILE (offline)")
    namespace, pod = parse_pod_ref(args.pod)
    kube = KubeClient.from_environment(args.kubeconfig, args.context)
    try:
        facts = kube.pod_facts(namespace, pod)
    except KubeNotFound as exc:
        raise UsageError(f"{exc} (check the namespace and name: kubectl get pods -n "
                         f"{namespace})") from None
    _print_results([diagnose(facts)], args.output, as_list=False)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "diagnose":
            return run_diagnose(args)
        if args.command == "demo":
            from bot.demo import run_demo

            return run_demo(args.scenarios, args.output)
    except (UsageError, InputError) as exc:
        print(f"imagepull-bot: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KubeError as exc:
        print(f"imagepull-bot: {exc}", file=sys.stderr)
        return EXIT_KUBE
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT
