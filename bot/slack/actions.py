"""Every Slack action id the bot puts on a button, in one place.

The blocks that draw the buttons (bot/slack/blocks.py) and the listeners that answer them
(handlers/actions.py) both read these names, so a button and its listener cannot drift apart.
"""

from __future__ import annotations

from typing import Final

#: Alert buttons: the value is an incident id.
QUOTA: Final = "ipb_check_quota"
VERIFY_SECRET: Final = "ipb_verify_secret"
RESTART: Final = "ipb_rollout_restart"
SET_IMAGE: Final = "ipb_set_image"
#: The escalation bundle of the incident's pod, posted in the alert's thread.
BUNDLE: Final = "ipb_bundle"
#: In the "cause went away" line of a thread (issue 12): retry now, not after the back-off.
RETRY: Final = "ipb_retry_now"
#: Approval buttons: the value is an approval request id.
APPROVE: Final = "ipb_approve"
DENY: Final = "ipb_deny"

#: alert button action id → the name bot/chatops/interactive.py knows it by
ALERT_BUTTONS: Final = {QUOTA: "quota", VERIFY_SECRET: "verify_secret", RESTART: "restart",
                        SET_IMAGE: "set_image", BUNDLE: "bundle", RETRY: "retry"}
