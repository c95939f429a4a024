"""Who may approve remediation: Slack user IDs and/or user groups from APPROVERS.

User groups are resolved through `usergroups.users.list` and cached for a few minutes, so a
click costs no API call most of the time; if Slack cannot be asked, a group grants nothing
(fail closed) and the refusal says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.text import Mrkdwn, user, usergroup

log = logging.getLogger(__name__)


def is_group(entry: str) -> bool:
    """Slack user group (subteam) IDs start with S; user IDs with U or W."""
    return entry.startswith("S")


class Approvers:
    def __init__(self, entries: Iterable[str], slack: WebClient, *, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.entries = [e.strip() for e in entries if e.strip()]
        self.users = {e for e in self.entries if not is_group(e)}
        self.groups = [e for e in self.entries if is_group(e)]
        self.slack = slack
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.entries)

    def _members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(group)
            if cached and self.clock() - cached[0] < self.ttl:
                return cached[1]
        try:
            response = self.slack.usergroups_users_list(usergroup=group)
            members = frozenset(str(u) for u in response.get("users") or [])
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("cannot resolve approver group %s: %s", group, exc)
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group] = (self.clock(), members)
        return members

    def allows(self, user_id: str) -> bool:
        if user_id in self.users:
            return True
        return any(user_id in self._members(group) for group in self.groups)

    def mention(self) -> Mrkdwn:
        """How to name the approvers in a message (live mentions only for valid Slack ids)."""
        if not self.entries:
            return Mrkdwn("nobody (APPROVERS is not set)")
        return Mrkdwn(", ").join(usergroup(e) if is_group(e) else user(e) for e in self.entries)
