"""The Docker Hub quota watch: say when a pull quota runs low, and when it is back.

Why: `toomanyrequests` on a node means the quota is already gone and pods are stuck; a warning
while a few pulls are left gives a person time to authenticate pulls or put a mirror in front.
Docker Hub counts pulls per *anonymous source IP* or per *account*, so the watch reads the
quota (bot/registry/dockerhub.py: a token, then a HEAD, which uses no quota) for:

* the bot's own outbound IP, anonymously (nodes behind the same NAT share that figure), and
* each Docker Hub account that a pull secret in use holds: dockerconfigjson / dockercfg
  secrets with a Docker Hub key (any spelling) that a service account or a failing pod lists.
  The fact watches (bot/kube/fact_watch.py) say which secrets exist and which are listed; the
  credentials come from one GET of each such secret (bot/registry/pullsecrets.py), and one
  check runs per *account*: two secrets with one username are one check.

Each quota owner (the IP as Docker Hub names it in `docker-ratelimit-source`, or the
account's username) has a *spell* record in the store while its quota is under
`QUOTA_WARN_REMAINING`: the replica that creates it (SET NX) posts the warning, the replica
that deletes it (compare-and-delete) posts the recovery in the warning's thread. So replicas
and restarts never repeat either message. A warning is posted at most once per Docker Hub
window (w=21600: six hours) per owner: a quota that dips under the threshold again within the
window of its last warning opens a quiet spell (no warning, and no recovery message for it).
A 429 counts as 0 left. A quota that cannot be read is logged (once until it reads again),
never posted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.diagnosis.fixes import dockerhub_quota_fixes
from bot.diagnosis.imageref import DOCKER_HUB, registry_matches
from bot.kube.client import KubeClient, KubeError
from bot.kube.fact_watch import WatchedFacts
from bot.kube.view import PodView
from bot.registry.dockerhub import Quota, dockerhub_quota
from bot.registry.model import RegistryCredentials
from bot.registry.pullsecrets import SecretError, secret_credentials
from bot.slack.blocks import quota_owner, quota_recovered_message, quota_warning_message
from bot.slack.notifier import outcome_unknown, posting_client
from bot.store import Store

log = logging.getLogger(__name__)

#: Docker Hub's window when its answer names none (w=21600).
DEFAULT_WINDOW = 21600
#: How long a spell record outlives its last write (a secret no longer in use, or an IP the
#: bot no longer leaves from, never recovers: its record goes after this).
SPELL_RETENTION = 7 * 24 * 3600.0


@dataclass(frozen=True)
class QuotaOwner:
    """One quota to check: anonymous (the bot's IP) or one account, with the secrets holding
    it ("namespace/name"). `credentials` hides its password in repr."""

    credentials: RegistryCredentials | None = None
    secrets: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """For logs: never the password."""
        return f"account {self.credentials.username}" if self.credentials else "anonymous"


QuotaReader = Callable[[RegistryCredentials | None], Quota]


class QuotaWatch:
    """The routine's `run`: read every quota in use, warn or say it recovered."""

    def __init__(self, store: Store, slack: WebClient, channel: str, *, kube: KubeClient,
                 read_quota: QuotaReader, facts: WatchedFacts | None = None,
                 view: PodView | None = None, warn_below: int = 20,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.slack = posting_client(slack)  # a post is never re-sent inside one call
        self.channel = channel
        self.kube = kube
        self.read_quota = read_quota
        self.facts = facts
        self.view = view
        self.warn_below = warn_below
        self.clock = clock
        #: owners whose last read failed (logged once until a read works again)
        self._unreadable: set[str] = set()
        self._facts_warned = False
        #: (namespace, secret) → (version, username it holds for Docker Hub, or None)
        self._usernames: dict[tuple[str, str], tuple[object, str | None]] = {}

    # -- what to check ------------------------------------------------------------------------
    def owners(self) -> list[QuotaOwner]:
        """The anonymous IP first, then one owner per Docker Hub account in use.

        Which account a secret holds is remembered per secret version (its username only,
        keyed by the update time the fact watch reports), so a tick reads one secret per
        account for its password, not every secret in use: 1,000 namespaces whose default
        service account lists a copy of one `dockerhub-creds` cost one GET a tick after the
        first."""
        by_user: dict[str, list[tuple[str, str]]] = {}
        in_use = self._hub_secrets_in_use()
        for (namespace, name), version in in_use.items():
            username = self._username(namespace, name, version)
            if username is not None:
                by_user.setdefault(username, []).append((namespace, name))
        self._usernames = {key: known for key, known in self._usernames.items()
                           if key in in_use}  # forget secrets no longer in use
        owners = [QuotaOwner()]
        for username in sorted(by_user):
            secrets = sorted(by_user[username])
            for namespace, name in secrets:  # the first that still holds this account
                credentials = self._credentials(namespace, name, in_use[(namespace, name)])
                if credentials is not None and credentials.username == username:
                    owners.append(QuotaOwner(credentials,
                                             tuple(f"{ns}/{n}" for ns, n in secrets)))
                    break
        return owners

    def _username(self, namespace: str, name: str, version: object) -> str | None:
        known = self._usernames.get((namespace, name))
        if known is not None and version is not None and known[0] == version:
            return known[1]
        credentials = self._credentials(namespace, name, version)
        return credentials.username if credentials is not None else None

    def _credentials(self, namespace: str, name: str,
                     version: object) -> RegistryCredentials | None:
        """The secret's Docker Hub credentials (one GET); its username is remembered."""
        try:
            credentials = secret_credentials(self.kube, namespace, name, DOCKER_HUB)
        except (KubeError, SecretError) as exc:
            log.info("quota watch: skipping pull secret %s/%s: %s", namespace, name, exc)
            credentials = None
        self._usernames[(namespace, name)] = (
            version, credentials.username if credentials is not None else None)
        return credentials

    def _hub_secrets_in_use(self) -> dict[tuple[str, str], object]:
        """(namespace, name) → version (update time) of each pull secret with a Docker Hub
        key that a service account or a failing pod lists, from the fact watches (no API
        list)."""
        if self.facts is None:
            return {}
        if not self.facts.current:
            if not self._facts_warned:
                log.warning("quota watch: the pull-secret and service-account watches are not "
                            "current (starting, out of contact, or not permitted): checking "
                            "only this bot's IP until they are")
                self._facts_warned = True
            return {}
        self._facts_warned = False
        used = self.facts.account_references() | set(self._pod_references())
        return {(ns, info.name): info.updated_at for ns, info in self.facts.all_pull_secrets()
                if (ns, info.name) in used
                and any(registry_matches(key, DOCKER_HUB) for key in info.registries)}

    def _pod_references(self) -> Iterable[tuple[str, str]]:
        if self.view is None:
            return ()
        return {(pod.namespace, name) for pod in self.view.failing()
                for name in pod.pull_secrets}

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> None:
        for owner in self.owners():
            self.check(owner)

    def check(self, owner: QuotaOwner) -> None:
        quota = self.read_quota(owner.credentials)
        if quota.status == 429 and quota.remaining is None:
            quota = replace(quota, remaining=0, error=None)  # over the limit: 0 left
        if not quota.ok:
            if owner.label not in self._unreadable:
                log.warning("quota watch: cannot read the Docker Hub quota of %s: %s",
                            owner.label, quota.error)
                self._unreadable.add(owner.label)
            return
        if owner.label in self._unreadable:
            log.info("quota watch: the Docker Hub quota of %s reads again", owner.label)
            self._unreadable.discard(owner.label)
        whose = quota_owner(quota, owner.secrets)
        low = not quota.unlimited and quota.remaining is not None \
            and quota.remaining < self.warn_below
        spell = self._spell_key(quota, owner)
        if low:
            self._warn(spell, quota, whose, owner)
        else:
            self._recover(spell, quota, whose)

    def _spell_key(self, quota: Quota, owner: QuotaOwner) -> str:
        who = (f"account:{owner.credentials.username}" if owner.credentials
               else f"ip:{quota.source or ''}")
        return self.store.key("quota", hashlib.sha256(who.encode()).hexdigest()[:32])

    def _warn(self, spell: str, quota: Quota, whose: Any, owner: QuotaOwner) -> None:
        now = self.clock()
        opening = json.dumps({"at": now})
        if not self.store.set_nx(spell, opening, ttl=SPELL_RETENTION):
            return  # warned already (or quietly) in this spell, by this or another replica
        window = quota.window_seconds or DEFAULT_WINDOW
        if not self.store.set_nx(f"{spell}:warned", repr(now), ttl=window):
            log.info("quota watch: %s under %d again within the window of its last warning: "
                     "not warning again", owner.label, self.warn_below)
            self.store.put(spell, json.dumps({"at": now, "quiet": True}), ttl=SPELL_RETENTION)
            return
        text, blocks = quota_warning_message(quota, whose, self.warn_below, now,
                                             dockerhub_quota_fixes(quota.authenticated))
        try:
            response = self.slack.chat_postMessage(channel=self.channel, text=text,
                                                   blocks=blocks, unfurl_links=False,
                                                   unfurl_media=False)
        except (SlackClientError, OSError) as exc:
            if outcome_unknown(exc):  # it may be in the channel: never post it twice
                log.warning("quota watch: the warning may not have reached Slack (%s); not "
                            "posting it again", _error(exc))
                return
            log.warning("quota watch: Slack refused the warning (%s); trying next time",
                        _error(exc))
            self.store.delete(f"{spell}:warned")
            self.store.delete_if_equals(spell, opening)
            return
        self.store.put(spell, json.dumps({"at": now, "channel": response.get("channel"),
                                          "ts": response.get("ts")}), ttl=SPELL_RETENTION)

    def _recover(self, spell: str, quota: Quota, whose: Any) -> None:
        raw = self.store.get(spell)
        if raw is None or not self.store.delete_if_equals(spell, raw):
            return  # no spell, or another replica is closing it
        record = _record(raw)
        if record.get("quiet"):
            return
        text, blocks = quota_recovered_message(quota, whose, self.warn_below)
        thread: dict[str, Any] = {}
        if record.get("ts") and record.get("channel"):
            thread = {"thread_ts": record["ts"], "reply_broadcast": False}
        try:
            self.slack.chat_postMessage(channel=record.get("channel") or self.channel,
                                        text=text, blocks=blocks, **thread)
        except (SlackClientError, OSError) as exc:
            if outcome_unknown(exc):
                log.warning("quota watch: the recovery may not have reached Slack (%s)",
                            _error(exc))
                return
            log.warning("quota watch: Slack refused the recovery (%s); trying next time",
                        _error(exc))
            self.store.set_nx(spell, raw, ttl=SPELL_RETENTION)


def _record(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return type(exc).__name__


#: How long a quota reading is reused instead of asking Docker Hub again: the kubelet's
#: shortest back-off wait (10 s), so a reused figure never makes the cause watch, which asks
#: on the kubelet's schedule, see a window reset later than the kubelet's own next pull could.
READING_FRESH_SECONDS = 10.0


class QuotaReadings:
    """The latest good reading of each quota, shared across replicas through the store for
    `READING_FRESH_SECONDS`, so the cause watch (bot/routines/cleared.py) reuses the quota
    watch's figure for an account instead of asking Docker Hub twice. A reading holds figures,
    the username and Docker Hub's source id: never a password. Failed reads are not kept."""

    def __init__(self, store: Store, fresh_for: float = READING_FRESH_SECONDS) -> None:
        self.store = store
        self.fresh_for = fresh_for

    def _key(self, credentials: RegistryCredentials | None) -> str:
        who = f"account:{credentials.username}" if credentials else "anonymous"
        return self.store.key("quota-reading", hashlib.sha256(who.encode()).hexdigest()[:32])

    def fresh(self, credentials: RegistryCredentials | None) -> Quota | None:
        """A reading of this quota taken within the freshness window, if any."""
        raw = self.store.get(self._key(credentials))
        data = _record(raw) if raw else {}
        try:
            return Quota(**{k: v for k, v in data.items() if k in Quota.__dataclass_fields__}) \
                if data else None
        except TypeError:
            return None

    def remember(self, credentials: RegistryCredentials | None, quota: Quota) -> None:
        if quota.ok:
            self.store.put(self._key(credentials), json.dumps(asdict(quota)), ttl=self.fresh_for)

    def recording(self, read: QuotaReader) -> QuotaReader:
        """`read`, always asking Docker Hub (the quota watch's own schedule), keeping each
        good answer for others to reuse."""

        def ask(credentials: RegistryCredentials | None) -> Quota:
            quota = read(credentials)
            self.remember(credentials, quota)
            return quota

        return ask

    def reusing(self, read: QuotaReader) -> QuotaReader:
        """`read`, answered from a fresh reading when there is one (asked, and kept, when
        not)."""
        recording = self.recording(read)

        def reuse(credentials: RegistryCredentials | None) -> Quota:
            return self.fresh(credentials) or recording(credentials)

        return reuse


def quota_reader(auth_url: str, registry_url: str, timeout: float) -> QuotaReader:
    """`dockerhub_quota` with the configured endpoints (DOCKERHUB_AUTH_URL/_REGISTRY_URL)."""

    def read(credentials: RegistryCredentials | None) -> Quota:
        return dockerhub_quota(credentials, auth_url=auth_url, registry_url=registry_url,
                               timeout=timeout)

    return read
