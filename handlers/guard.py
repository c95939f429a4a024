"""Every listener answers the person, in words, whatever goes wrong behind it.

Why this exists: Bolt's HTTP runner (process_before_response=False) runs a listener in a
worker thread and waits for its ack(); when the listener raises AFTER ack(), the runner resets
the ack to None (slack_bolt/listener/thread_runner.py), so the HTTP thread waits the full 3-s
ack timeout and answers 404 "unhandled request" - that was the Approve button's 404 with Redis
down - while the person's "working on it…" never gets an answer. So no listener may raise:
`answers_failures` wraps each one, turns the errors people can act on into a sentence sent the
way the interaction expects (the ack's text for a slash command not yet acked, an ephemeral
response_url message after it, a thread reply for a mention), and logs one line. Only a bug
(an exception nobody expected) is logged with its traceback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.kwargs_injection.args import Args
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.inbound import UNREADABLE_BUTTON, MalformedPayload
from bot.store import StoreRefused, StoreUnavailable

log = logging.getLogger(__name__)

STORE_UNREACHABLE = ("⚠️ The bot's state store is unreachable, so nothing was changed. "
                     "Try again in a minute.")
STORE_REFUSED = ("⚠️ The bot's state store refused that request, so nothing was changed. "
                 "If it happens again, tell whoever runs the bot.")
SLACK_REFUSED = "⚠️ Slack did not take the bot's message ({code}). Try again in a minute."
UNEXPECTED = ("⚠️ Something went wrong inside the bot while handling this; it is in the bot's "
              "log. Check the result before trying again.")

#: Set on every guarded listener, so a test can prove that none was registered bare.
GUARD_MARK = "answers_failures"


def answers_failures(listener: Callable[..., None]) -> Callable[..., None]:
    """Wrap a Bolt listener so it never raises; see the module docstring for why."""
    wanted = list(inspect.signature(listener).parameters)

    def guarded(args: Args) -> None:
        try:
            listener(**{name: getattr(args, name) for name in wanted})
        except Exception as exc:
            _tell(args, explain(exc, listener.__name__))

    # not functools.wraps: Bolt reads the signature (through __wrapped__) to inject arguments
    guarded.__name__ = listener.__name__
    guarded.__qualname__ = listener.__qualname__
    guarded.__doc__ = listener.__doc__
    setattr(guarded, GUARD_MARK, True)
    return guarded


def explain(exc: Exception, where: str) -> str:
    """The sentence for the person; one log line for the operator (a traceback only for bugs)."""
    if isinstance(exc, StoreUnavailable):
        log.warning("%s: answered 'state store unreachable': %s", where, exc)
        return STORE_UNREACHABLE
    if isinstance(exc, StoreRefused):
        log.warning("%s: answered 'state store refused': %s", where, exc)
        return STORE_REFUSED
    if isinstance(exc, MalformedPayload):
        log.warning("%s: unreadable button press: %s", where, exc)
        return UNREADABLE_BUTTON
    if isinstance(exc, SlackClientError):
        code = (str(exc.response.get("error") or "error") if isinstance(exc, SlackApiError)
                else type(exc).__name__)
        log.warning("%s: a Slack call failed: %s", where, code)
        return SLACK_REFUSED.format(code=code)
    log.exception("%s failed", where)
    return UNEXPECTED


def _tell(args: Args, text: str) -> None:
    body: dict[str, Any] = args.body if isinstance(args.body, dict) else {}
    ack, respond, say = args.ack, args.respond, args.say
    try:
        if "command" in body and ack is not None and ack.response is None:
            ack(text=text)  # a slash command not yet acked: the ack's text is the answer
            return
        if ack is not None and ack.response is None:
            ack()
        if "event" in body and say is not None:
            event = body["event"] if isinstance(body.get("event"), dict) else {}
            say(text=text, thread_ts=event.get("thread_ts") or event.get("ts"))
        elif respond is not None and body.get("response_url"):
            respond(text=text, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # Slack unreachable too: the log line above is all we can do
        log.warning("could not tell the person (%s): %s", type(exc).__name__, str(exc)[:200])
