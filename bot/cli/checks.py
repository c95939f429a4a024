"""Live checks for `check-config`: can the bot reach what it needs, with what it was given?"""

from __future__ import annotations

from bot.config import Settings
from bot.kube.client import KubeClient, KubeError
from bot.store import RedisStore, RedisUrlError


def live_checks(settings: Settings) -> list[tuple[bool, str]]:
    """(ok, plain-words line) for the Kubernetes API, Redis and Slack."""
    results: list[tuple[bool, str]] = []
    try:
        kube = KubeClient.from_environment(settings.kubeconfig,
                                           read_secrets=settings.read_secrets)
        version = kube.server_version()
        kube.list_pods(settings.watch_namespaces[0] if settings.watch_namespaces else None)
        results.append((True, f"Kubernetes API {kube.api.configuration.host} answers "
                              f"({version or 'version unknown'}) and pods can be listed"))
    except KubeError as exc:
        results.append((False, f"Kubernetes: {exc}"))
    if settings.redis_url:
        try:
            problem = RedisStore(settings.redis_url,
                                 ca_bundle=settings.redis_ca_bundle).check()
        except RedisUrlError as exc:
            problem = str(exc)
        results.append((problem is None, "Redis answers" if problem is None else
                        f"Redis at {settings.redis_url.split('@')[-1]}: {problem}"))
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    if token:
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            auth = WebClient(token=token, base_url=settings.slack_api_url, timeout=5).auth_test()
            results.append((True, f"Slack accepts the bot token (bot user {auth.get('user')} in "
                                  f"{auth.get('team')})"))
        except SlackApiError as exc:
            results.append((False, f"Slack refuses the bot token: "
                                   f"{exc.response.get('error')}"))
        except (SlackClientError, OSError) as exc:
            results.append((False, f"Slack API at {settings.slack_api_url} is unreachable: "
                                   f"{type(exc).__name__}"))
    return results
