"""`python -m bot` / `imagepull-bot`: the command line.

Exit codes are a contract for scripts: 0 done (diagnosed, or no pull problem), 2 bad arguments
or input, 3 Kubernetes API unreachable or forbidden, 4 the registry could not be asked (quota,
tags, verify-secret). `audit` has its own, for CI: 0 clean, 1 findings, 2 errors (bad
arguments, the API unreachable or refusing).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.cli.offline import InputError, facts_from_files
from bot.config import Settings, load_settings
from bot.diagnosis import names
from bot.diagnosis.engine import diagnose
from bot.diagnosis.facts import PodFacts
from bot.diagnosis.imageref import InvalidImageReference, parse_image
from bot.diagnosis.model import PodDiagnosis
from bot.diagnosis.render import render_text
from bot.diagnosis.terminal import TerminalFormatter, write, write_error, write_json
from bot.kube.client import (
    SECRETS_HOW_TO_GRANT,
    SECRETS_NOT_READ,
    KubeClient,
    KubeError,
    KubeNotFound,
)
from bot.sim.demo import UnknownScenario, run_demo
from bot.store import RedisUrlError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_OK = 0
EXIT_FINDINGS = 1  # audit: something to fix
EXIT_BAD_INPUT = 2
EXIT_KUBE = 3
EXIT_REGISTRY = 4


class UsageError(ValueError):
    """Bad command-line input; the message is shown as is."""


class RegistryUnavailable(RuntimeError):
    """The registry could not be asked; the message says why."""


def parse_namespaced(value: str, what: str = "POD") -> tuple[str, str]:
    """`NAMESPACE/NAME`, validated as Kubernetes validates them, before any API call."""
    try:
        return names.parse_namespaced(value, what)
    except names.InvalidName as exc:
        raise UsageError(str(exc)) from None


def parse_pod_ref(value: str) -> tuple[str, str]:
    return parse_namespaced(value, "POD")


def _image(value: str) -> Any:
    try:
        return parse_image(value)
    except InvalidImageReference as exc:
        raise UsageError(f"not a valid image reference: {exc}") from None


class _Parser(argparse.ArgumentParser):
    """argparse's usage, help and error lines echo arguments: they go through the terminal
    sink like every other output (sub-commands' parsers inherit this class)."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            write(message, end="", file=file or sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="imagepull-bot",
        description="Explain Kubernetes image-pull failures and the exact command that fixes them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def kube_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, "
                       "~/.kube/config, or in-cluster)")
        p.add_argument("--context", help="kubeconfig context to use")

    def output_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--output", "-o", choices=("text", "json"), default="text")

    diag = sub.add_parser("diagnose", help="diagnose one pod, live or from kubectl JSON files")
    diag.add_argument("pod", nargs="?", metavar="NAMESPACE/POD",
                      help="the pod to diagnose through the Kubernetes API")
    diag.add_argument("--pod-json", type=Path, metavar="FILE",
                      help="offline: `kubectl get pod -o json` output (a Pod or a List)")
    diag.add_argument("--events-json", type=Path, metavar="FILE",
                      help="offline: `kubectl get events -o json` output (a List or one Event)")
    diag.add_argument("--no-registry", action="store_true",
                      help="do not ask registries (live mode asks them unless "
                      "REGISTRY_PROBE=false)")
    diag.add_argument("--registry", action="store_true",
                      help="offline, with consent: ask each failing image's registry "
                      "(anonymously, or with --secret-json) so the diagnosis can confirm a "
                      "close tag; without it --pod-json never leaves the machine")
    diag.add_argument("--secret-json", type=Path, metavar="FILE",
                      help="offline with --registry: a pull Secret (`kubectl get secret NAME "
                      "-o json`) whose credentials are used for those requests only and "
                      "never printed")
    output_option(diag)
    kube_options(diag)

    bundle = sub.add_parser("bundle", help="the escalation bundle of one pod: the field "
                            "guide's 'when to escalate' list (events, images, node, runtime, "
                            "versions, pull secrets without passwords, admission webhooks) and "
                            "the node-side commands to run next")
    bundle.add_argument("pod", metavar="NAMESPACE/POD")
    output_option(bundle)
    kube_options(bundle)

    quota = sub.add_parser("quota", help="Docker Hub pull quota, anonymous or of a pull secret")
    quota.add_argument("--secret", metavar="NAMESPACE/NAME",
                       help="check the quota of the Docker Hub account in this pull secret")
    output_option(quota)
    kube_options(quota)

    verify = sub.add_parser("verify-secret", help="check a pull secret against the registry")
    verify.add_argument("secret", metavar="NAMESPACE/SECRET")
    verify.add_argument("--image", required=True, metavar="REF",
                        help="the image the secret must be able to pull")
    output_option(verify)
    kube_options(verify)

    tags = sub.add_parser("tags", help="list a repository's tags and resolve a reference")
    tags.add_argument("image", metavar="REF", help="an image or repository, e.g. nginx:lates")
    tags.add_argument("--secret", metavar="NAMESPACE/NAME", help="pull with this secret")
    output_option(tags)
    kube_options(tags)

    audit = sub.add_parser("audit", help="check every workload against the field guide's "
                           "prevention rules (exit 1 when there are findings)")
    audit.add_argument("--namespace", "-n", metavar="NS",
                       help="audit one namespace (default: WATCH_NAMESPACES, or all)")
    output_option(audit)
    kube_options(audit)

    serve = sub.add_parser("serve", help="run the bot: HTTP for Slack (/slack/events), "
                           "/healthz, /readyz, plus the watcher and scheduler")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    socket_mode = sub.add_parser("socket", help="run the bot over Slack Socket Mode (no public "
                                 "ingress); /healthz, /readyz, /metrics on PORT")
    socket_mode.add_argument("--host", default="0.0.0.0",  # noqa: S104
                             help="address the ops endpoints listen on")
    check = sub.add_parser("check-config", help="say what is missing or wrong in the "
                           "environment, and test the connections")
    check.add_argument("--mode", choices=("serve", "socket"), default="serve")
    check.add_argument("--offline", action="store_true",
                       help="only check the settings, do not contact anything")

    demo = sub.add_parser("demo", help="play an incident timeline against the real pipeline "
                          "and show what the Slack channel receives")
    story = demo.add_mutually_exclusive_group()
    story.add_argument("--socket", action="store_true",
                       help="also ask the bot over Socket Mode (the local stand-in), across a "
                       "connection refresh")
    story.add_argument("--fleet", action="store_true",
                       help="several clusters behind one Slack app: two scenario clusters, "
                       "their agents and one Redis (REDIS_URL, else 127.0.0.1:6379)")
    scenarios = sub.add_parser("scenarios", help="diagnose every pod of the built-in "
                               "scenarios (one per cause)")
    output_option(scenarios)
    scenarios.add_argument("ids", nargs="*", help="scenario ids (default: all)")
    return parser


def _print_results(results: Sequence[PodDiagnosis], output: str, as_list: bool) -> None:
    if output == "json":
        write_json([r.to_json() for r in results] if as_list else results[0].to_json())
    else:
        write("\n".join(render_text(r) for r in results), end="")


def _kube(args: argparse.Namespace, settings: Settings) -> KubeClient:
    return KubeClient.from_environment(args.kubeconfig or settings.kubeconfig, args.context,
                                       read_secrets=settings.read_secrets)


def run_diagnose(args: argparse.Namespace, settings: Settings) -> int:
    from bot.alerts.investigate import diagnose_pod
    from bot.registry.client import client_from_settings

    if args.pod_json is None and args.events_json is not None:
        raise UsageError("--events-json needs --pod-json")
    _check_offline_registry_flags(args)
    if args.pod_json is not None:
        if args.pod:
            raise UsageError("give either NAMESPACE/POD or --pod-json, not both")
        offline = facts_from_files(args.pod_json, args.events_json)
        if args.registry:
            results = _offline_with_registry(args, settings, offline)
        else:  # offline stays offline: nothing here opens a connection
            results = [diagnose(f) for f in offline]
        _print_results(results, args.output, as_list=len(offline) > 1)
        return EXIT_OK
    if not args.pod:
        raise UsageError("give NAMESPACE/POD (live) or --pod-json FILE (offline)")
    namespace, pod = parse_pod_ref(args.pod)
    kube = _kube(args, settings)
    probe = settings.registry_probe and not args.no_registry
    with client_from_settings(settings) as registry:
        try:
            result = diagnose_pod(kube, namespace, pod, registry if probe else None,
                                  settings.registry_endpoints)
        except KubeNotFound as exc:
            raise UsageError(f"{exc} (check the namespace and name: kubectl get pods -n "
                             f"{namespace})") from None
    _print_results([result], args.output, as_list=False)
    return EXIT_OK


def run_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from bot.alerts.bundle import escalation_bundle
    from bot.diagnosis.render import render_bundle_text

    namespace, pod = parse_pod_ref(args.pod)
    try:
        bundle = escalation_bundle(_kube(args, settings), namespace, pod)
    except KubeNotFound as exc:
        raise UsageError(f"{exc} (check the namespace and name: kubectl get pods -n "
                         f"{namespace})") from None
    if args.output == "json":
        write_json(bundle.to_json())
    else:
        write(render_bundle_text(bundle), end="")
    return EXIT_OK


def _check_offline_registry_flags(args: argparse.Namespace) -> None:
    """--registry is consent for offline files; --secret-json only means something with it."""
    if args.registry and args.pod_json is None:
        raise UsageError("--registry is for --pod-json (a live diagnosis asks registries "
                         "unless --no-registry)")
    if args.registry and args.no_registry:
        raise UsageError("give either --registry or --no-registry, not both")
    if args.secret_json is not None and not args.registry:
        raise UsageError("--secret-json needs --registry (offline diagnoses ask no registry "
                         "unless you say so)")


def _offline_with_registry(args: argparse.Namespace, settings: Settings,
                           offline: Sequence[PodFacts]) -> list[PodDiagnosis]:
    """The files' pods, diagnosed with their registries' answers (REGISTRY_PROBE is for
    live installs: --registry is this person's explicit consent)."""
    from bot.cli.offline_registry import credentials_from_file, diagnose_files_with_registry
    from bot.registry.client import client_from_settings

    credentials = credentials_from_file(args.secret_json) if args.secret_json else {}
    with client_from_settings(settings) as registry:
        return diagnose_files_with_registry(offline, registry, credentials,
                                            settings.registry_endpoints)


def _secret_credentials(args: argparse.Namespace, settings: Settings, registry: str) -> Any:
    from bot.registry.pullsecrets import SecretError, secret_credentials

    namespace, name = parse_namespaced(args.secret, "SECRET")
    try:
        credentials = secret_credentials(_kube(args, settings), namespace, name, registry)
    except (KubeNotFound, SecretError) as exc:
        raise UsageError(str(exc)) from None
    if credentials is None:
        raise UsageError(f"secret {namespace}/{name} has no credentials for {registry}")
    return credentials


def _emit(payload: dict[str, Any], text: str, output: str) -> None:
    if output == "json":
        write_json(payload)
    else:
        write(text)


def run_quota(args: argparse.Namespace, settings: Settings) -> int:
    from bot.registry.dockerhub import dockerhub_quota

    credentials = _secret_credentials(args, settings, "docker.io") if args.secret else None
    quota = dockerhub_quota(credentials, auth_url=settings.dockerhub_auth_url,
                            registry_url=settings.dockerhub_registry_url,
                            timeout=settings.registry_timeout_seconds)
    payload = {"limit": quota.limit, "remaining": quota.remaining,
               "window_seconds": quota.window_seconds, "source": quota.source,
               "authenticated": quota.authenticated, "unlimited": quota.unlimited,
               "error": quota.error, "summary": quota.describe()}
    _emit(payload, quota.describe(), args.output)
    return EXIT_OK if quota.ok else EXIT_REGISTRY


def run_verify_secret(args: argparse.Namespace, settings: Settings) -> int:
    from bot.registry.client import client_from_settings
    from bot.registry.pullsecrets import SecretError, VerifyStatus, verify_pull_secret

    namespace, name = parse_namespaced(args.secret, "SECRET")
    image = _image(args.image)
    if not settings.read_secrets:
        raise UsageError(f"{namespace}/{name} cannot be verified: {SECRETS_NOT_READ}; "
                         f"{SECRETS_HOW_TO_GRANT}")
    with client_from_settings(settings) as registry:
        try:
            result = verify_pull_secret(_kube(args, settings), registry, namespace, name, image)
        except KubeNotFound as exc:
            raise UsageError(str(exc)) from None
        except SecretError as exc:
            raise UsageError(str(exc)) from None
    lines = [f"{namespace}/{name} for {image.original}: {result.status.value}",
             f"  {result.message}"]
    if result.username:
        lines.append(f"  username {result.username} (from auths key {result.auths_key}); "
                     f"registry answered {result.registry_answer}")
    lines.append(f"  registries in the secret: {', '.join(result.registries) or 'none'}")
    lines.append("  used by service accounts: " + (", ".join(result.referenced_by) or "none"))
    lines += [f"  note: {n}" for n in result.notes]
    _emit(result.to_json(), "\n".join(lines), args.output)
    return EXIT_REGISTRY if result.status is VerifyStatus.REGISTRY_UNREACHABLE else EXIT_OK


def run_tags(args: argparse.Namespace, settings: Settings) -> int:
    from bot.diagnosis.suggest import closest_tags, no_close_tag
    from bot.registry.client import client_from_settings

    ref = _image(args.image)
    credentials = _secret_credentials(args, settings, ref.registry) if args.secret else None
    with client_from_settings(settings) as registry:
        listing = registry.list_tags(ref, credentials)
        if not listing.probe.ok:
            detail = listing.probe.message or listing.probe.outcome.value
            raise RegistryUnavailable(f"cannot list tags of {ref.name}: {detail}")
        wanted = ref.digest or ref.effective_tag
        exists = wanted in listing.tags if not ref.digest else \
            registry.head_manifest(ref, credentials).ok
        closest = [] if exists or ref.digest else closest_tags(wanted, listing.tags)
    # nothing close: say so with the newest tags, rather than guess (issue 12)
    none_close = None if exists or closest or ref.digest else no_close_tag(wanted, listing.tags)
    payload = {"repository": ref.name, "tags": list(listing.tags), "complete": listing.complete,
               "reference": wanted, "exists": exists, "closest": closest,
               "none_close": none_close}
    text = [f"{ref.name}: {len(listing.tags)} tags" + ("" if listing.complete else " (partial)"),
            f"  {wanted}: " + ("exists" if exists else "not found"
                               + (f"; closest: {', '.join(closest)}" if closest else "")
                               + (f"; {none_close}" if none_close else "")),
            "  " + " ".join(listing.tags)]
    _emit(payload, "\n".join(text), args.output)
    return EXIT_OK


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    from bot.diagnosis.audit import audit
    from bot.diagnosis.render import render_audit_text
    from bot.kube.inventory import gather

    if args.namespace is not None and not names.is_dns1123_label(args.namespace):
        raise UsageError(f"namespace {args.namespace!r} is not a valid DNS-1123 label")
    namespaces = [args.namespace] if args.namespace else settings.watch_namespaces or None
    try:
        result = audit(gather(_kube(args, settings), namespaces))
    except KubeError as exc:  # unreachable, forbidden, an unknown namespace: an error, not 3
        write_error(str(exc))
        return EXIT_BAD_INPUT
    if args.output == "json":
        write_json(result.to_json())
    else:
        write(render_audit_text(result), end="")
    return EXIT_OK if result.clean else EXIT_FINDINGS


def _require(settings: Settings, mode: str) -> None:
    from bot.config import config_problems

    blocking = [p for p in config_problems(settings, mode) if not p.startswith("REDIS_URL")]
    if blocking:
        raise UsageError(f"cannot start ({mode}): " + "; ".join(blocking)
                         + " — run `python -m bot check-config` for details")


def _stop_on_sigterm() -> None:
    """Kubernetes stops pods with SIGTERM: treat it like Ctrl-C so the watcher, scheduler and
    workers shut down cleanly (and in-flight work is not cut mid-post)."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import build_bolt_app, build_runtime
    from bot.server import make_http_server

    _require(settings, "serve")
    runtime = build_runtime(settings)
    bolt = build_bolt_app(settings, runtime)
    server = make_http_server(bolt, runtime, args.host, settings.port)
    _stop_on_sigterm()
    runtime.start()
    write(f"imagepull-bot: listening on {args.host}:{settings.port} (/slack/events, /healthz, "
          "/readyz)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        runtime.stop()
    return EXIT_OK


def run_socket(args: argparse.Namespace, settings: Settings) -> int:
    """Socket Mode through bot/slack/socket_mode.py (its docstring says why not Bolt's
    adapters: the ack must stay within 3 s across Slack's connection refresh), plus /healthz,
    /readyz and /metrics on PORT for the Deployment's probes and scrapes."""
    import threading

    from slack_sdk.errors import SlackApiError

    from bot.app import build_bolt_app, build_runtime
    from bot.server import make_ops_server, socket_mode_handler

    _require(settings, "socket")
    runtime = build_runtime(settings)
    bolt = build_bolt_app(settings, runtime)
    ops = make_ops_server(runtime, args.host, settings.port)
    ops_thread = threading.Thread(target=ops.serve_forever, name="ops-http", daemon=True)
    _stop_on_sigterm()
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    # several clusters: routes requests for other clusters like `serve`, and joins this
    # cluster's bus consumer group (both need SLACK_SIGNING_SECRET; see bot/chatops/bus/)
    handler = socket_mode_handler(bolt, runtime, app_token)
    try:
        ops_thread.start()
        runtime.start()
        try:
            handler.client.connect_to_new_endpoint()
        except SlackApiError as exc:
            error = exc.response.get("error")
            raise UsageError(f"Slack refused the Socket Mode connection (apps.connections.open: "
                             f"{error}); check SLACK_APP_TOKEN (an app-level token with "
                             "connections:write)") from None
        write(f"imagepull-bot: Socket Mode connected; /healthz, /readyz, /metrics on "
              f"{args.host}:{settings.port}", file=sys.stderr)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        ops.shutdown()
        ops.server_close()
        runtime.stop()
    return EXIT_OK


def run_check_config(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.checks import live_checks
    from bot.config import config_problems

    problems = config_problems(settings, args.mode)
    results = [] if args.offline else live_checks(settings)
    for problem in problems:
        write(f"✗ {problem}")
    for ok, line in results:
        write(f"{'✓' if ok else '✗'} {line}")
    blocking = [p for p in problems if not p.startswith("REDIS_URL")]
    failed = [line for ok, line in results if not ok]
    if not problems and not failed:
        write(f"✓ ready to run `python -m bot {args.mode}`")
    return EXIT_BAD_INPUT if blocking or failed else EXIT_OK


COMMANDS = {"diagnose": run_diagnose, "bundle": run_bundle, "quota": run_quota,
            "verify-secret": run_verify_secret,
            "tags": run_tags, "audit": run_audit, "serve": run_serve, "socket": run_socket,
            "check-config": run_check_config}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    default_level = "WARNING" if args.command in ("demo", "scenarios") else "INFO"
    handler = logging.StreamHandler()
    handler.setFormatter(TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", default_level).upper(),
                        handlers=[handler])
    for chatty in ("apscheduler", "httpx", "kubernetes.client.rest"):  # a line per request/job
        logging.getLogger(chatty).setLevel(logging.WARNING if chatty != "apscheduler"
                                           else logging.ERROR)
    try:
        if args.command == "demo" and args.fleet:
            from bot.cli.fleet_demo import run_fleet_story

            return run_fleet_story()
        if args.command == "demo":
            from bot.sim.demo_story import run_story

            return run_story(socket=args.socket)
        if args.command == "scenarios":

            return run_demo(args.ids, args.output)
        try:
            settings = load_settings()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                 for e in exc.errors())
            raise UsageError(f"invalid configuration: {problems}") from None
        return COMMANDS[args.command](args, settings)
    except (UsageError, InputError, UnknownScenario, RedisUrlError) as exc:
        write_error(str(exc))
        return EXIT_BAD_INPUT
    except KubeError as exc:
        write_error(str(exc))
        return EXIT_KUBE
    except RegistryUnavailable as exc:
        write_error(str(exc))
        return EXIT_REGISTRY
