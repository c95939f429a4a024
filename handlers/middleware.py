"""Middleware, not a listener: Slack redelivers an Events API event it thinks timed out
(X-Slack-Retry-Num), and Bolt's HTTP mode runs the listener again (bolt-python#731). One claim
per event_id in the store makes every delivery after the first a no-op, on any replica."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from slack_bolt import App, BoltRequest, BoltResponse

from bot.store import Store, StoreError

log = logging.getLogger(__name__)
EVENT_CLAIM_TTL = 3600.0  # Slack retries for minutes, not hours
#: Slack's event ids (`Ev` + letters and digits); anything else never becomes a store key.
EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,40}")


def register(app: App, store: Store) -> None:
    @app.middleware
    def first_delivery_only(request: BoltRequest, response: BoltResponse,
                            next: Callable[[], BoltResponse]) -> BoltResponse:
        event_id = request.body.get("event_id") if isinstance(request.body, dict) else None
        if isinstance(event_id, str) and EVENT_ID.fullmatch(event_id):
            try:
                first = store.set_nx(store.key("slack", "event", event_id),
                                             "1", ttl=EVENT_CLAIM_TTL)
            except StoreError:
                first = True  # better a rare double answer than a lost event
            if not first:
                log.info("event %s already handled (retry %s): skipped", event_id,
                         request.headers.get("x-slack-retry-num", ["?"])[0])
                return BoltResponse(status=200, body="")
        return next()
