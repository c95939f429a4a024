"""`diagnose --pod-json FILE --registry [--secret-json FILE]`: offline with consent (issue 12,
Deliver 6). A pasted ticket gets the confirmed tag suggestion from the real registry; without
`--registry` nothing leaves the machine; a secret's password is used and never shown."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_OK, main
from tests.diagnosis import kubelet
from tests.registry.test_pullsecrets import pull_secret
from tests.support.registry import DEPLOY_PASSWORD, DEPLOY_USER, RegistryServer, push_image
from tests.support.stubs import BlackholeServer

pytest_plugins = ["tests.support.fixtures"]
pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install that turned live probing off: --registry is the person's own consent."""
    monkeypatch.setenv("REGISTRY_PROBE", "false")
    monkeypatch.setenv("REGISTRY_TIMEOUT_SECONDS", "1")


def _not_found(image: str) -> str:
    """containerd's words for a tag the registry does not have."""
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": {image}: not found')


def _ticket(tmp_path: Path, image: str, message: str | None = None) -> list[str]:
    """The files someone attached (kubelet >= 1.30 puts the pull error in the waiting
    message), as `diagnose` arguments."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           **kubelet.pod(image, waiting_reason="ErrImagePull",
                         waiting_message=message or _not_found(image))}
    events = {"apiVersion": "v1", "kind": "EventList",
              "items": kubelet.pull_failure(image, _not_found(image))}
    (tmp_path / "pod.json").write_text(json.dumps(pod))
    (tmp_path / "events.json").write_text(json.dumps(events))
    return ["diagnose", "--pod-json", str(tmp_path / "pod.json"),
            "--events-json", str(tmp_path / "events.json")]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _entry(out: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(out)["diagnoses"][0]
    return entry


def _secret_file(tmp_path: Path, server: str, username: str, password: str) -> Path:
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(pull_secret("regcred", server, username, password)))
    return path


def test_without_registry_offline_makes_no_connection(
        blackhole: BlackholeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", blackhole.host)
    argv = _ticket(tmp_path, f"{blackhole.host}/team/app:v2.l")

    code, out, err = _run([*argv, "-o", "json"], capsys)
    assert code == EXIT_OK, err
    assert blackhole.connections == 0
    assert _entry(out)["suggested_image"] is None

    # the same files with consent do reach the listening registry: the check above can fail
    code, out, err = _run([*argv, "--registry", "-o", "json"], capsys)
    assert code == EXIT_OK, err
    assert blackhole.connections >= 1
    assert any("bot's network" in line for line in _entry(out)["evidence"])


def test_registry_confirms_v2_1_for_v2_l(registry_plain: RegistryServer, unique_repo: str,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for tag in ("v2.0", "v2.1", "v2.2"):
        push_image(registry_plain, unique_repo, tag)
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_plain.host)
    argv = _ticket(tmp_path, f"{registry_plain.host}/{unique_repo}:v2.l")
    wanted = f"{registry_plain.host}/{unique_repo}:v2.1"

    code, out, err = _run([*argv, "--registry", "-o", "json"], capsys)
    assert code == EXIT_OK, err
    entry = _entry(out)
    assert entry["cause"] == "tag_not_found"
    assert entry["suggested_image"] == wanted
    assert "tag_suggestion" in entry["findings"]
    assert wanted in entry["fixes"][0]["command"]
    assert entry["evidence"][-1].startswith(
        f"registry: asked {registry_plain.host} for {unique_repo}:v2.l anonymously: 404")

    code, out, err = _run([*argv, "--registry"], capsys)  # text output says it too
    assert code == EXIT_OK, err
    assert f"{wanted}, which exists" in out


def test_no_close_tag_is_said_offline(registry_plain: RegistryServer, unique_repo: str,
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for tag in ("v2.0", "v2.1"):
        push_image(registry_plain, unique_repo, tag)
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_plain.host)
    code, out, err = _run([*_ticket(tmp_path, f"{registry_plain.host}/{unique_repo}:v9"),
                           "--registry", "-o", "json"], capsys)
    assert code == EXIT_OK, err
    entry = _entry(out)
    assert entry["suggested_image"] is None
    assert entry["evidence"][-1].endswith("; no tag close to v9; the newest are v2.1, v2.0")


def test_secret_json_credentials_are_used_and_never_printed(
        registry_auth: RegistryServer, unique_repo: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed = registry_auth.seed_credentials or registry_auth.credentials
    for tag in ("v2.0", "v2.1", "v2.2"):
        push_image(registry_auth, unique_repo, tag, credentials=seed)
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_auth.host)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    argv = [*_ticket(tmp_path, f"{registry_auth.host}/{unique_repo}:v2.l"), "--registry"]
    secret = _secret_file(tmp_path, registry_auth.host, DEPLOY_USER, DEPLOY_PASSWORD)
    outputs = []

    code, out, err = _run([*argv, "--secret-json", str(secret), "-o", "json"], capsys)
    assert code == EXIT_OK, err
    entry = _entry(out)
    assert entry["suggested_image"] == f"{registry_auth.host}/{unique_repo}:v2.1"
    assert f"as {DEPLOY_USER}" in entry["evidence"][-1]
    outputs += [out, err]
    code, out, err = _run([*argv, "--secret-json", str(secret)], capsys)
    assert code == EXIT_OK, err
    outputs += [out, err]

    code, out, err = _run([*argv, "-o", "json"], capsys)  # anonymously: refused, no guess
    assert code == EXIT_OK, err
    assert _entry(out)["suggested_image"] is None
    assert "anonymously: 401" in _entry(out)["evidence"][-1]

    wrong = _secret_file(tmp_path, registry_auth.host, DEPLOY_USER, "not-the-password")
    code, out, err = _run([*argv, "--secret-json", str(wrong), "-o", "json"], capsys)
    assert code == EXIT_OK, err
    assert _entry(out)["suggested_image"] is None
    outputs += [out, err]

    printed = "\n".join([*outputs, caplog.text])
    auth = base64.b64encode(f"{DEPLOY_USER}:{DEPLOY_PASSWORD}".encode()).decode()
    for secret_text in (DEPLOY_PASSWORD, "not-the-password", auth):
        assert secret_text not in printed


@pytest.mark.parametrize(("extra", "said"), [
    (["--registry"], "--registry is for --pod-json"),
    (["--secret-json", "s.json"], "--secret-json needs --registry"),
])
def test_live_mode_refuses_offline_flags(extra: list[str], said: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["diagnose", "shop/web", *extra], capsys)
    assert code == EXIT_BAD_INPUT
    assert said in err


def test_flags_that_contradict_or_lack_consent(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = _ticket(tmp_path, "registry.internal/team/app:v2.l")
    secret = _secret_file(tmp_path, "registry.internal", DEPLOY_USER, DEPLOY_PASSWORD)
    code, _, err = _run([*argv, "--secret-json", str(secret)], capsys)
    assert code == EXIT_BAD_INPUT and "--secret-json needs --registry" in err
    code, _, err = _run([*argv, "--registry", "--no-registry"], capsys)
    assert code == EXIT_BAD_INPUT and "not both" in err


@pytest.mark.parametrize(("secret", "said"), [
    ({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "db"},
      "data": {"password": base64.b64encode(DEPLOY_PASSWORD.encode()).decode()}},
     "secret db is of type Opaque, not a docker-registry secret"),
    ({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
      "metadata": {"name": "broken"}, "data": {".dockerconfigjson": DEPLOY_PASSWORD}},
     "secret broken: .dockerconfigjson is not base64-encoded JSON"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
     "expected kind Secret (or a List), found ConfigMap"),
    ({"apiVersion": "v1", "kind": "List", "items": []}, "must hold one Secret"),
])
def test_unusable_secret_file_is_one_line_without_its_data(
        secret: dict[str, Any], said: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = _ticket(tmp_path, "registry.internal/team/app:v2.l")
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(secret))
    code, out, err = _run([*argv, "--registry", "--secret-json", str(path)], capsys)
    assert code == EXIT_BAD_INPUT
    assert said in err and str(path) in err
    assert len(err.strip().splitlines()) == 1
    assert DEPLOY_PASSWORD not in out + err


def test_hostile_text_in_the_ticket_is_escaped(registry_plain: RegistryServer,
                                               unique_repo: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    push_image(registry_plain, unique_repo, "v2.1")
    monkeypatch.setenv("REGISTRY_INSECURE_HOSTS", registry_plain.host)
    image = f"{registry_plain.host}/{unique_repo}:v2.l"
    argv = _ticket(tmp_path, image, message=_not_found(image) + "\x1b[2J\x1b]0;owned\x07\u202e")
    code, out, err = _run([*argv, "--registry"], capsys)
    assert code == EXIT_OK, err
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert f"{registry_plain.host}/{unique_repo}:v2.1" in out


def test_help_documents_the_consent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["diagnose", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--registry" in text and "never leaves the machine" in text
    assert "--secret-json" in text and "never printed" in text
