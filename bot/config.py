"""Settings from the environment (12-factor), validated once at start.

The variable names are a contract with users, the deploy manifests and the Procfile; see the
README's Configuration section. Maps are written `host=value,host2=value2` so they fit in one
environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _pairs(value: object) -> dict[str, str]:
    """`a=1,b=2` → {"a": "1", "b": "2"}; a dict passes through (tests, .env JSON)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs: dict[str, str] = {}
    for item in str(value or "").split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(f"expected host=value, got {item.strip()!r}")
        pairs[key.strip().lower()] = val.strip()
    return pairs


def _items(value: object) -> list[str]:
    if isinstance(value, list | tuple | set):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


class Settings(BaseSettings):
    """Everything the bot reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    cluster_name: str = Field(default="default", alias="CLUSTER_NAME")
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")
    #: namespaces to watch; empty: the whole cluster
    watch_namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                              alias="WATCH_NAMESPACES")

    # -- Slack ---------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_alert_channel: str | None = Field(default=None, alias="SLACK_ALERT_CHANNEL")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    #: Slack user IDs (U…/W…) and/or user group IDs (S…) allowed to approve remediation
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="APPROVERS")
    #: the two-person rule: whoever asked for a remediation may not approve it
    require_second_approver: bool = Field(default=False, alias="REQUIRE_SECOND_APPROVER")
    approval_ttl_seconds: float = Field(default=900.0, gt=0, alias="APPROVAL_TTL_SECONDS")
    #: channel IDs where /imagepull may be used; empty: anywhere
    command_channels: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                              alias="COMMAND_CHANNELS")
    port: int = Field(default=3000, ge=1, le=65535, alias="PORT")
    #: how long one Slack Web API call may take before its answer counts as lost (a lost
    #: answer to chat.postMessage is "maybe posted": the bot looks before posting again)
    slack_timeout_seconds: float = Field(default=10.0, gt=0, le=120,
                                         alias="SLACK_TIMEOUT_SECONDS")

    # -- what this install may do (the profiles in deploy/overlays/ set these) ------------------
    #: offer and run approved remediations (PATCHes); false in the read-only profile, whose
    #: role has no patch verb: no remediation buttons, and the commands say why
    remediation_enabled: bool = Field(default=True, alias="REMEDIATION_ENABLED")
    #: read pull secrets (list, watch, get); false in the no-secrets profile, whose role has
    #: no rule on secrets: the secret checks and credentialed registry probes are skipped
    read_secrets: bool = Field(default=True, alias="READ_SECRETS")

    # -- state and timing ----------------------------------------------------------------------
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    #: CA bundle file for a `rediss://` Redis signed by a private CA (empty: the system's CAs)
    redis_ca_bundle: str | None = Field(default=None, alias="REDIS_CA_BUNDLE")
    #: how often every replica says it is alive into the shared Redis (`/imagepull clusters`,
    #: issue 13); 0: never (needs REDIS_URL). It also sets when a cluster is silent: after
    #: three of its intervals without a beat (bot/alerts/presence.py `silent_after`), a
    #: request for it is answered at once and not sent
    heartbeat_seconds: float = Field(default=15.0, ge=0, alias="HEARTBEAT_SECONDS")
    #: several clusters (issue 13): the cluster a channel's `/imagepull` commands go to when
    #: they name none, e.g. `C123=prod-eu,C456=prod-us` (channel ID=CLUSTER_NAME)
    channel_clusters: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict,
                                                                  alias="CHANNEL_CLUSTERS")
    #: a replica's unacknowledged bus entries are taken over by another after this long
    bus_claim_idle_seconds: float = Field(default=30.0, gt=0, alias="BUS_CLAIM_IDLE_SECONDS")
    group_wait_seconds: float = Field(default=10.0, ge=0, alias="GROUP_WAIT_SECONDS")
    group_interval_seconds: float = Field(default=60.0, ge=0, alias="GROUP_INTERVAL_SECONDS")
    repeat_interval_seconds: float = Field(default=4 * 3600.0, gt=0,
                                           alias="REPEAT_INTERVAL_SECONDS")
    sweep_interval_seconds: float = Field(default=30.0, gt=0, alias="SWEEP_INTERVAL_SECONDS")
    start_window_seconds: float = Field(default=300.0, ge=0, alias="START_WINDOW_SECONDS")
    #: how long a replica's claim on an incident lasts: another replica takes over the
    #: incident's due work only after it expires (e.g. when the claiming replica was killed),
    #: so keep it above the longest post (Slack timeouts and 429 waits: a minute or two)
    claim_ttl_seconds: float = Field(default=120.0, gt=0, alias="CLAIM_TTL_SECONDS")
    #: failing pods whose diagnosis document the pod view keeps (about 1.3 KB each, beside
    #: the 0.7 KB every Pending pod costs); beyond it a failing pod is still watched, and its
    #: diagnosis reads it from the API (one GET). 0: keep none (README "Performance")
    view_max_documents: int = Field(default=10_000, ge=0, alias="VIEW_MAX_DOCUMENTS")

    #: ask registries what the kubelet could not tell (tags, repository existence, digests)
    registry_probe: bool = Field(default=True, alias="REGISTRY_PROBE")
    #: registry host → base URL, e.g. a mirror or, in tests and the demo, a loopback server
    registry_endpoints: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="REGISTRY_ENDPOINTS")
    #: hosts reached over plain HTTP (everything else: HTTPS with verification)
    registry_insecure_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="REGISTRY_INSECURE_HOSTS")
    #: registry host → CA bundle file for registries signed by a private CA
    registry_ca_bundles: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="REGISTRY_CA_BUNDLES")
    registry_timeout_seconds: float = Field(default=5.0, gt=0, le=60,
                                            alias="REGISTRY_TIMEOUT_SECONDS")
    dockerhub_auth_url: str = Field(default="https://auth.docker.io/token",
                                    alias="DOCKERHUB_AUTH_URL")
    dockerhub_registry_url: str = Field(default="https://registry-1.docker.io",
                                        alias="DOCKERHUB_REGISTRY_URL")


    # -- scheduled watches (bot/routines) --------------------------------------------------------
    #: how often the Docker Hub quota watch reads the quotas (HEAD only: reading uses no quota)
    #: (0: no quota watch, e.g. where the bot cannot reach Docker Hub)
    quota_check_interval_seconds: float = Field(default=600.0, ge=0,
                                                alias="QUOTA_CHECK_INTERVAL_SECONDS")
    #: warn the alert channel when fewer Docker Hub pulls than this are left (IP or account)
    quota_warn_remaining: int = Field(default=20, ge=0, alias="QUOTA_WARN_REMAINING")
    #: when the daily digest is posted (crontab, UTC); empty: no digest
    digest_cron: str = Field(default="0 9 * * *", alias="DIGEST_CRON")

    # -- the prevention audit and the credentials watch (issue 11) ------------------------------
    #: when the weekly audit digest is posted to the alert channel (crontab, UTC; empty: never)
    audit_cron: str = Field(default="0 9 * * 1", alias="AUDIT_CRON")
    #: how often the credentials watch looks (each finding is said once a day; 0: never)
    credentials_watch_seconds: float = Field(default=3600.0, ge=0,
                                             alias="CREDENTIALS_WATCH_SECONDS")

    @field_validator("digest_cron", "audit_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        value = " ".join(value.split())
        if value:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"not a crontab expression ({exc})") from None
        return value

    @field_validator("registry_endpoints", "registry_ca_bundles", "channel_clusters",
                     mode="before")
    @classmethod
    def _parse_pairs(cls, value: object) -> dict[str, str]:
        return _pairs(value)

    @field_validator("registry_insecure_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: object) -> list[str]:
        return [v.lower() for v in _items(value)]

    @field_validator("watch_namespaces", "approvers", "command_channels", mode="before")
    @classmethod
    def _parse_items(cls, value: object) -> list[str]:
        return _items(value)

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_ends_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def alert_channel(self) -> str:
        return (self.slack_alert_channel or "").lstrip("#") or "imagepull-alerts"

    @field_validator("redis_ca_bundle")
    @classmethod
    def _redis_bundle_exists(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"CA bundle file not found: {value}")
        return value or None

    @field_validator("registry_ca_bundles")
    @classmethod
    def _bundles_exist(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [f"{h}={p}" for h, p in value.items() if not Path(p).is_file()]
        if missing:
            raise ValueError(f"CA bundle file(s) not found: {', '.join(missing)}")
        return value


def load_settings() -> Settings:
    """Read and validate the environment (raises pydantic.ValidationError with every problem)."""
    return Settings()


def config_problems(settings: Settings, mode: str) -> list[str]:
    """What a newcomer must still set for `mode` ("serve" or "socket"), in plain words."""
    problems: list[str] = []

    def secret(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    token = secret(settings.slack_bot_token)
    if not token:
        problems.append("SLACK_BOT_TOKEN is not set: the bot token (xoxb-…) from your Slack app's "
                        "OAuth & Permissions page")
    elif not token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN should be a bot token starting with xoxb-")
    if mode == "serve" and not secret(settings.slack_signing_secret):
        problems.append("SLACK_SIGNING_SECRET is not set: Basic Information → App Credentials → "
                        "Signing Secret (HTTP mode verifies every request with it)")
    if mode == "socket":
        app_token = secret(settings.slack_app_token)
        if not app_token:
            problems.append("SLACK_APP_TOKEN is not set: an app-level token (xapp-…) with "
                            "connections:write, for Socket Mode")
        elif not app_token.startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN should be an app-level token starting with xapp-")
        if settings.redis_url and not secret(settings.slack_signing_secret):
            # advisory (starts with REDIS_URL): one cluster's Socket Mode install needs none
            problems.append("REDIS_URL is set but SLACK_SIGNING_SECRET is not: when other "
                            "clusters' agents share that Redis, Socket Mode signs the requests "
                            "it forwards to them (and verifies theirs) with the Slack app's "
                            "signing secret (Basic Information → App Credentials → Signing "
                            "Secret); without it a command for another cluster is refused")
    if not settings.slack_alert_channel:
        problems.append("SLACK_ALERT_CHANNEL is not set: the channel for alerts (name or ID); "
                        "invite the bot to it")
    if not settings.redis_url:
        problems.append("REDIS_URL is not set: without it deduplication is per process and "
                        "state is lost on restart (fine for a try-out, not for production)")
    return problems
