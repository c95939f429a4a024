"""The test session's secret-leak scanner: known secret values, and where they must never show.

Why: the bot promises never to print a pull secret's password or token, in Slack or in a log
line. A test per message cannot keep that promise for messages nobody thought of, so the whole
session is watched instead (tests/conftest.py): every log record (formatted, traceback
included) and every call any `SlackStandIn` records is scanned for every known test secret.

Secrets are collected programmatically, never listed by hand twice:
- `scenario_secrets()` reads every bundled scenario (bot/sim/scenarios/*.yaml): the passwords,
  `auth` and identity tokens inside each docker-registry Secret, the scenario registries' user
  passwords, and a scenario's API token;
- support code that mints or holds a secret calls `SECRETS.add(value, label)` (the Docker Hub
  stub's and the token server's tokens when they are minted);
- tests/conftest.py adds the module constants (DEPLOY_PASSWORD, HUB_PASSWORD, the seed
  password, the Slack stand-in's bot token, the signing secret).

A finding names the secret by its label and the place (test id, logger or Slack method), never
the value itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: Shorter values would match by accident (and are not secrets anyone would use).
MIN_SECRET_LENGTH = 8


class SecretRegistry:
    """Known secret values (thread-safe: servers mint tokens on their own threads)."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, value: object, label: str) -> None:
        text = str(value or "")
        if len(text) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._values.setdefault(text, label)

    def items(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._values.items())

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


#: The session's registry; support code adds to it (see the module docstring).
SECRETS = SecretRegistry()


def _forms(value: str) -> set[str]:
    """The spellings a leaked value takes on its way out: as is, inside JSON, Slack-escaped,
    URL-quoted."""
    slack = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {value, json.dumps(value)[1:-1], slack, quote(value, safe="")}


class LeakScanner:
    """Scans text for the registry's secrets and keeps every finding (label and place)."""

    def __init__(self, registry: SecretRegistry) -> None:
        self.registry = registry
        self.findings: list[str] = []
        self._lock = threading.Lock()
        self._forms: dict[str, tuple[str, set[str]]] = {}

    def check(self, text: str) -> list[str]:
        """Labels of the secrets `text` contains (records nothing)."""
        found: list[str] = []
        for value, label in self.registry.items():
            forms = self._forms.get(value)
            if forms is None:
                forms = self._forms[value] = (label, _forms(value))
            if any(form in text for form in forms[1]):
                found.append(label)
        return found

    def scan(self, text: str, where: str) -> None:
        for label in self.check(text):
            with self._lock:
                self.findings.append(f"{where}: contains {label}")


class LeakLogHandler(logging.Handler):
    """Formats every record (message, arguments, traceback, stack) and scans the result."""

    def __init__(self, scanner: LeakScanner, where: Any = lambda: "") -> None:
        super().__init__(logging.NOTSET)
        self.scanner = scanner
        self.where = where
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted is pytest's to report
            return
        self.scanner.scan(text, f"log record of {record.name} ({self.where()})")


def slack_call_text(call: Any) -> str:
    """Everything a recorded Slack call carries that the bot or Slack wrote (the presented
    token is left out: it is the bot authenticating, not a leak)."""
    return json.dumps({"method": call.method, "params": call.params,
                       "response": call.response}, default=str, ensure_ascii=False)


# -- collecting ---------------------------------------------------------------------------------
def docker_config_secrets(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(value, label) for every credential inside a docker-registry Secret object."""
    meta = obj.get("metadata") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    for key, encoded in (obj.get("data") or {}).items():
        try:
            config = json.loads(base64.b64decode(str(encoded)))
        except (binascii.Error, ValueError):
            continue
        if not isinstance(config, dict):
            continue
        auths = config.get("auths") if isinstance(config.get("auths"), dict) else config
        for server, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            for field in ("password", "auth", "identitytoken", "registrytoken"):
                if entry.get(field):
                    yield str(entry[field]), f"{field} of secret {name} ({server})"
            if entry.get("auth"):
                try:
                    decoded = base64.b64decode(str(entry["auth"])).decode()
                except (binascii.Error, UnicodeDecodeError):
                    continue
                password = decoded.partition(":")[2]
                if password:
                    yield password, f"password in auth of secret {name} ({server})"
        yield str(encoded), f"{key} of secret {name}"


def _registry_users(registries: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for host, repos in (registries or {}).items():
        for repo, spec in (repos or {}).items():
            if isinstance(spec, dict):
                for user, password in (spec.get("users") or {}).items():
                    yield str(password), f"password of {user} on {host}/{repo}"


def scenario_secrets(paths: Iterable[Path] | None = None) -> Iterator[tuple[str, str]]:
    """Every credential in the bundled scenarios (or in `paths`)."""
    from bot.sim.scenario import bundled_scenarios, load_scenario

    for path in paths if paths is not None else bundled_scenarios():
        scenario = load_scenario(path)
        for value, label in _registry_users(scenario.registries):
            yield value, f"{label} (scenario {scenario.name})"
        if scenario.token:
            yield scenario.token, f"API token of scenario {scenario.name}"
        for obj in scenario.objects:
            if obj.get("kind") == "Secret":
                for value, label in docker_config_secrets(obj):
                    yield value, f"{label} (scenario {scenario.name})"
