"""`/imagepull`: validate, ack within Slack's 3 seconds, then answer through response_url.

Every answer is Slack mrkdwn built through bot/slack/text.py: the user's own command text is
echoed only inside a backtick-safe, escaped code span, so typing `<!channel>` after
`/imagepull` cannot make the bot ping a channel.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.chatops.commands import HELP, CommandError, Help, parse_command
from bot.chatops.interactive import Interactive
from bot.chatops.routing import ClusterNameError, split_cluster
from bot.config import Settings
from bot.slack.text import Mrkdwn, code, sentence
from handlers.guard import answers_failures


def register(app: App, interactive: Interactive) -> None:
    @app.command("/imagepull")
    @answers_failures
    def imagepull(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        if not interactive.allowed_channel(str(command.get("channel_id"))):
            ack(text=Mrkdwn("`/imagepull` is not enabled in this channel (COMMAND_CHANNELS)."))
            return
        own = interactive.settings.cluster_name
        try:
            cluster, text = split_cluster(str(command.get("text") or ""))
            if cluster is not None and cluster != own:  # routing could not send it here
                ack(text=Mrkdwn("⚠️ This agent watches {}, not {}, and could not forward the "
                                "request, so nothing was run: {}.").format(
                    code(own), code(cluster), _why_not_forwarded(interactive.settings)))
                return
            parsed = parse_command(text)
        except (CommandError, ClusterNameError) as exc:
            ack(text=Mrkdwn("⚠️ {}\n\n{}").format(sentence(exc), Mrkdwn(HELP)))
            return
        if isinstance(parsed, Help):
            ack(text=Mrkdwn(HELP))
            return
        typed = f"/imagepull {str(command.get('text') or '').strip()}"
        ack(text=Mrkdwn("⏳ {} — working on it…").format(code(typed)))
        text, blocks = interactive.run(parsed, str(command.get("user_id")),
                                       str(command.get("channel_id")))
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)


def _why_not_forwarded(settings: Settings) -> str:
    """Why bot/chatops/bus.py left a command for another cluster here: it routes HTTP and
    Socket Mode requests alike, given a shared Redis (and, to sign Socket Mode requests, the
    app's signing secret), so what is missing is one of those, or Redis did not answer."""
    if not settings.redis_url:
        return ("agents reach other clusters through one Redis they share; set REDIS_URL to it "
                "on every cluster's agent")
    signing = settings.slack_signing_secret
    if not (signing and signing.get_secret_value()):
        return ("requests cross to other clusters signed with the Slack app's signing secret; "
                "set SLACK_SIGNING_SECRET")
    return "the shared Redis did not answer; try again in a moment"
