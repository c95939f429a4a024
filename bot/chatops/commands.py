"""`/imagepull` sub-commands: parsed and validated before anything is called.

Pure: text in, a command or a CommandError with a helpful message out. Names are checked as
Kubernetes checks them (DNS-1123) so malformed input never reaches the API.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from bot.diagnosis.imageref import InvalidImageReference, parse_image
from bot.diagnosis.markup import code_span
from bot.diagnosis.names import InvalidName, is_dns1123_label, parse_namespaced

HELP = """*`/imagepull` — image-pull help from imagepull-bot*
• `/imagepull diagnose NAMESPACE/POD` — why the pod cannot pull its image, and the fix
• `/imagepull bundle NAMESPACE/POD` — the escalation bundle: events, images (and the \
workload's), node, runtime, versions, pull secrets (no passwords), admission webhooks, and the \
node-side commands to run next
• `/imagepull quota [--secret NAMESPACE/SECRET]` — Docker Hub pull quota (the bot's IP, or \
a secret's account)
• `/imagepull verify-secret NAMESPACE/SECRET --image REF` — do these credentials pull that image?
• `/imagepull verify-secret NAMESPACE/POD` — check every pull secret of a pod against its images
• `/imagepull audit [NAMESPACE]` — the prevention audit: `:latest` tags, digests, pull secrets \
on pods, anonymous Docker Hub pulls, cloud registries on static secrets, and the fix for each
• `/imagepull restart NAMESPACE/KIND/NAME` — ask for an approved rollout restart \
(deployment, statefulset, daemonset)
• `/imagepull clusters` — every cluster's agent sharing this bot's Redis: reporting (last \
heartbeat, version, replicas, last watch event, open incidents) or silent for how long
• `/imagepull help` — this text"""

_KINDS = {"deployment": "Deployment", "deploy": "Deployment", "deployments": "Deployment",
          "statefulset": "StatefulSet", "sts": "StatefulSet", "statefulsets": "StatefulSet",
          "daemonset": "DaemonSet", "ds": "DaemonSet", "daemonsets": "DaemonSet"}


_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


class CommandError(ValueError):
    """Bad input; the message says what was wrong and how to write it."""


@dataclass(frozen=True)
class Diagnose:
    namespace: str
    pod: str


@dataclass(frozen=True)
class Bundle:
    namespace: str
    pod: str


@dataclass(frozen=True)
class Quota:
    secret: tuple[str, str] | None = None


@dataclass(frozen=True)
class VerifySecret:
    namespace: str
    name: str  # the secret (with image) or the pod (without)
    image: str | None = None


@dataclass(frozen=True)
class Restart:
    namespace: str
    kind: str
    name: str


@dataclass(frozen=True)
class Audit:
    namespace: str | None = None


@dataclass(frozen=True)
class Clusters:
    pass


@dataclass(frozen=True)
class Help:
    pass


Command = Diagnose | Bundle | Quota | VerifySecret | Restart | Audit | Clusters | Help


def _namespaced(value: str, what: str) -> tuple[str, str]:
    try:
        return parse_namespaced(value, what)
    except InvalidName as exc:
        raise CommandError(str(exc)) from None


def _options(words: list[str], allowed: set[str]) -> tuple[list[str], dict[str, str]]:
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name not in allowed:
                raise CommandError(f"unknown option --{name}")
            if not eq:
                if i + 1 >= len(words):
                    raise CommandError(f"--{name} needs a value")
                i += 1
                value = words[i]
            options[name] = value
        else:
            positional.append(word)
        i += 1
    return positional, options


def parse_command(text: str) -> Command:
    """Parse the text after `/imagepull`."""
    cleaned = text.translate(_SMART_QUOTES)  # Slack clients often "smarten" quotes
    try:
        words = shlex.split(cleaned)
    except ValueError as exc:
        raise CommandError(f"could not read the arguments: {exc}") from None
    if not words or words[0] in ("help", "-h", "--help"):
        return Help()
    verb, rest = words[0].lower(), words[1:]
    if verb == "diagnose":
        positional, _ = _options(rest, set())
        if len(positional) != 1:
            raise CommandError("usage: `/imagepull diagnose NAMESPACE/POD`")
        return Diagnose(*_namespaced(positional[0], "POD"))
    if verb == "bundle":
        positional, _ = _options(rest, set())
        if len(positional) != 1:
            raise CommandError("usage: `/imagepull bundle NAMESPACE/POD`")
        return Bundle(*_namespaced(positional[0], "POD"))
    if verb == "quota":
        positional, options = _options(rest, {"secret"})
        if positional:
            raise CommandError("usage: `/imagepull quota [--secret NAMESPACE/SECRET]`")
        secret = options.get("secret")
        return Quota(_namespaced(secret, "SECRET") if secret else None)
    if verb in ("verify-secret", "verify"):
        positional, options = _options(rest, {"image"})
        if len(positional) != 1:
            raise CommandError("usage: `/imagepull verify-secret NAMESPACE/SECRET --image REF` "
                               "or `/imagepull verify-secret NAMESPACE/POD`")
        image = options.get("image")
        if image is not None:
            try:
                parse_image(image)
            except InvalidImageReference as exc:
                raise CommandError(f"not a valid image reference: {exc}") from None
        return VerifySecret(*_namespaced(positional[0], "SECRET"), image)
    if verb == "audit":
        positional, _ = _options(rest, set())
        if len(positional) > 1:
            raise CommandError("usage: `/imagepull audit [NAMESPACE]`")
        if positional and not is_dns1123_label(positional[0]):
            raise CommandError(f"namespace {code_span(positional[0])} is not a valid DNS-1123 "
                               "label (lower-case letters, digits and '-', at most 63 "
                               "characters)")
        return Audit(positional[0] if positional else None)
    if verb == "clusters":
        if rest:
            raise CommandError("usage: `/imagepull clusters`")
        return Clusters()
    if verb == "restart":
        positional, _ = _options(rest, set())
        parts = positional[0].split("/") if len(positional) == 1 else []
        if len(parts) != 3:
            raise CommandError("usage: `/imagepull restart NAMESPACE/KIND/NAME`, e.g. "
                               "`/imagepull restart shop/deployment/web`")
        kind = _KINDS.get(parts[1].lower())
        if kind is None:
            raise CommandError(f"cannot restart a {parts[1]}: rollout restart works on "
                               "deployments, statefulsets and daemonsets")
        namespace, name = _namespaced(f"{parts[0]}/{parts[2]}", "NAME")
        return Restart(namespace, kind, name)
    raise CommandError(f"unknown sub-command {code_span(words[0])}. Try `/imagepull help`.")
