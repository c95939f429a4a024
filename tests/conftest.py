"""Session-wide guard: no test secret may appear in any log line or any Slack call.

Installed for the whole session (see tests/support/leaks.py for the why and what is known):
- a logging handler on the root logger that formats and scans every record, traceback
  included; the root level is lowered to INFO (what `python -m bot serve` logs by default) so
  the bot's INFO lines are scanned too;
- an observer on every `SlackStandIn` (`SlackStandIn.observers`) that scans each recorded call:
  chat.postMessage, chat.update, response_url posts, ephemerals, views...

At the end of the session any finding fails the run (exit status 1) and the summary says where,
naming the secret by its label only. Under pytest-xdist each worker scans what it runs and hands
its findings to the controller (`pytest_testnodedown`), which reports them and fails the run.
`tests/security/test_leak_scanner.py` proves the scanner catches a planted leak, in one process
and under xdist, so this guard cannot silently be a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator

import pytest

from bot.sim.slack import DEFAULT_TOKEN, SlackStandIn
from bot.store import RedisStore
from tests.support import leaks
from tests.support.leaks import SECRETS, LeakLogHandler, LeakScanner
from tests.support.redis import redis_store
from tests.support.redis_cluster import RedisClusterForTests, running_cluster

#: The daily digest (DIGEST_CRON, 09:00 UTC by default) of a bot a test starts must not post
#: into that test's Slack stand-in because the suite runs at 09:00; tests of it set it.
os.environ.setdefault("DIGEST_CRON", "")
#: Likewise the weekly audit (Mondays 09:00 UTC) and the hourly credentials watch: off unless a
#: test turns them on (tests/routines/test_audit_routines.py).
os.environ.setdefault("AUDIT_CRON", "")
os.environ.setdefault("CREDENTIALS_WATCH_SECONDS", "0")

_current = {"test": "collection"}
_CHATTY = {"apscheduler": logging.ERROR, "httpx": logging.WARNING,
           "kubernetes.client.rest": logging.WARNING}
SCANNER = LeakScanner(SECRETS)


def _collect_known_secrets() -> None:
    """The constants; tests/support/fixtures.py adds the seed password itself when imported
    (importing it here would keep pytest from rewriting its asserts)."""
    from tests.support.registry import DEPLOY_PASSWORD, DEPLOY_USER
    from tests.support.slack_requests import SIGNING_SECRET
    from tests.support.stubs import HUB_PASSWORD, HUB_USER

    SECRETS.add(DEPLOY_PASSWORD, f"password of {DEPLOY_USER} (tests/support/registry.py)")
    SECRETS.add(HUB_PASSWORD, f"password of {HUB_USER} (tests/support/stubs.py)")
    SECRETS.add(DEFAULT_TOKEN, "the Slack stand-in's bot token")
    SECRETS.add(SIGNING_SECRET, "the Slack signing secret of the tests")
    for value, label in leaks.scenario_secrets():
        SECRETS.add(value, label)


def _where() -> str:
    return _current["test"]


def _observe(call: object) -> None:
    SCANNER.scan(leaks.slack_call_text(call),
                 f"Slack {getattr(call, 'method', '?')} call ({_where()})")


_HANDLER = LeakLogHandler(SCANNER, _where)


def pytest_sessionstart(session: pytest.Session) -> None:
    _collect_known_secrets()
    root = logging.getLogger()
    root.addHandler(_HANDLER)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
        for chatty, level in _CHATTY.items():  # as bot/cli/main.py quiets them in production
            if logging.getLogger(chatty).level == logging.NOTSET:
                logging.getLogger(chatty).setLevel(level)
    SlackStandIn.observers.append(_observe)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, object, object]:
    _current["test"] = item.nodeid
    try:
        return (yield)
    finally:
        _current["test"] = f"after {item.nodeid}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_HANDLER)
    if _observe in SlackStandIn.observers:
        SlackStandIn.observers.remove(_observe)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its findings go to the controller, which
        workeroutput["leak_findings"] = list(SCANNER.findings)  # reports them and fails the run
        return
    if SCANNER.findings and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist controller: a worker finished; its findings join this process's (the workers ran
    the tests, the controller's own scanner saw nothing)."""
    output = getattr(node, "workeroutput", None) or {}
    SCANNER.findings.extend(output.get("leak_findings", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    findings = SCANNER.findings
    if not findings:
        terminalreporter.write_line(
            f"secret-leak scan: {len(SECRETS)} test secrets, none in any log line or Slack call")
        return
    terminalreporter.section("SECRET LEAKS (the session fails)", red=True)
    shown = sorted(set(findings))
    for line in shown[:50]:
        terminalreporter.write_line(line, red=True)
    if len(shown) > 50:
        terminalreporter.write_line(f"…and {len(shown) - 50} more", red=True)


@pytest.fixture
def slack() -> Generator[SlackStandIn, None, None]:
    """A Slack stand-in on loopback (real slack_sdk talks to it); a test module may define its
    own `slack` fixture when it needs one configured differently."""
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def store() -> Generator[RedisStore, None, None]:
    """A real Redis store under a prefix of its own, its keys removed afterwards."""
    with redis_store() as s:
        yield s


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory
                  ) -> Generator[RedisClusterForTests, None, None]:
    """A real three-node Redis Cluster on loopback for the session (started only when a test
    asks for it, ~2 s; tests/support/redis_cluster.py); skipped, saying why, without
    redis-server."""
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster
