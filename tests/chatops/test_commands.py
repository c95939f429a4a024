"""`/imagepull` argument parsing: every sub-command, and malformed input with a helpful error."""

from __future__ import annotations

import pytest

from bot.chatops.commands import (
    Audit,
    Bundle,
    CommandError,
    Diagnose,
    Help,
    Quota,
    Restart,
    VerifySecret,
    parse_command,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("", Help()),
    ("help", Help()),
    ("diagnose shop/web-7d9f8b6c5d-x2x9q", Diagnose("shop", "web-7d9f8b6c5d-x2x9q")),
    ("  diagnose   shop/web-1  ", Diagnose("shop", "web-1")),
    ("bundle shop/web-7d9f8b6c5d-x2x9q", Bundle("shop", "web-7d9f8b6c5d-x2x9q")),
    ("quota", Quota()),
    ("quota --secret shop/dockerhub-creds", Quota(("shop", "dockerhub-creds"))),
    ("quota --secret=shop/hub", Quota(("shop", "hub"))),
    ("verify-secret shop/regcred --image registry.internal/team/app:2.1",
     VerifySecret("shop", "regcred", "registry.internal/team/app:2.1")),
    ("verify-secret shop/web-7d9f8b6c5d-x2x9q", VerifySecret("shop", "web-7d9f8b6c5d-x2x9q")),
    ("restart shop/deployment/web", Restart("shop", "Deployment", "web")),
    ("audit", Audit()),
    ("audit shop", Audit("shop")),
    ("restart shop/sts/db", Restart("shop", "StatefulSet", "db")),
    ("restart shop/ds/log-agent", Restart("shop", "DaemonSet", "log-agent")),
    ("verify-secret shop/regcred --image “nginx:1.27”", VerifySecret("shop", "regcred",
                                                                      "nginx:1.27")),
])
def test_valid(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("diagnose", "usage: `/imagepull diagnose NAMESPACE/POD`"),
    ("diagnose shop", "expected NAMESPACE/POD"),
    ("diagnose Shop/web", "DNS-1123"),
    ("diagnose shop/web_1", "DNS-1123"),
    ("diagnose shop/a shop/b", "usage"),
    ("diagnose 'shop/x", "could not read the arguments"),
    ("bundle", "usage: `/imagepull bundle NAMESPACE/POD`"),
    ("bundle shop/a shop/b", "usage"),
    ("bundle Shop/web", "DNS-1123"),
    ("quota extra", "usage"),
    ("quota --secret", "needs a value"),
    ("quota --token x", "unknown option --token"),
    ("verify-secret", "usage"),
    ("verify-secret shop/regcred --image Not:Valid", "not a valid image reference"),
    ("restart shop/web", "usage: `/imagepull restart NAMESPACE/KIND/NAME`"),
    ("restart shop/pod/web-1", "cannot restart a pod"),
    ("restart shop/job/migrate", "cannot restart a job"),
    ("restart shop/deployment/Web", "DNS-1123"),
    ("frobnicate", "unknown sub-command `frobnicate`"),
    ("audit shop tools", "usage: `/imagepull audit [NAMESPACE]`"),
    ("audit Shop", "DNS-1123"),
    ("diagnose shop/" + "a" * 254, "at most 253"),
])
def test_malformed_input_gets_a_helpful_error(text: str, says: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse_command(text)
    assert says in str(exc.value)
