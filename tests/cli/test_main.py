"""The command line: arguments, offline input, output formats and exit codes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bot.cli.main import EXIT_BAD_INPUT, EXIT_KUBE, EXIT_OK, UsageError, main, parse_pod_ref

DATA = Path(__file__).parents[1] / "data" / "offline"
POD = DATA / "web-pod.json"
EVENTS = DATA / "web-events.json"


@pytest.mark.parametrize("value", ["shop", "shop/", "/web", "Shop/web", "shop/Web",
                                   "shop/web_1", "-shop/web", "a" * 64 + "/web", "shop/web/x"])
def test_invalid_pod_refs_are_refused_before_any_api_call(value: str) -> None:
    with pytest.raises(UsageError):
        parse_pod_ref(value)


def test_valid_pod_ref() -> None:
    assert parse_pod_ref("shop/web-7d9f8b6c5d-x2x9q") == ("shop", "web-7d9f8b6c5d-x2x9q")
    assert parse_pod_ref("kube-system/coredns.v1-0") == ("kube-system", "coredns.v1-0")


def test_bad_pod_ref_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "Shop/web"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "DNS-1123" in err and "Traceback" not in err


def test_offline_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diagnose", "--pod-json", str(POD), "--events-json", str(EVENTS), "-o", "json"])
    assert code == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["namespace"] == "shop" and out["pod"] == "web-7d9f8b6c5d-x2x9q"
    [entry] = out["diagnoses"]
    assert entry["cause"] == "tag_not_found"
    assert entry["workload"] == {"kind": "Deployment", "name": "web"}
    assert entry["backoff"]["attempts"] == 4
    assert "kubectl set image deployment/web 'web=nginx:<tag>' -n shop" in [
        f["command"] for f in entry["fixes"]]


def test_offline_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--pod-json", str(POD), "--events-json", str(EVENTS)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "tag_not_found" in out and "Deployment/web" in out
    assert "$ kubectl set image deployment/web 'web=nginx:<tag>' -n shop" in out


def test_events_file_may_hold_a_single_event(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    items = json.loads(EVENTS.read_text())["items"]
    single = tmp_path / "event.json"
    single.write_text(json.dumps(next(e for e in items if "Failed to pull" in e["message"])))
    assert main(["diagnose", "--pod-json", str(POD), "--events-json", str(single),
                 "-o", "json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["diagnoses"][0]["cause"] == "tag_not_found"


def test_pod_list_prints_an_array(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = json.loads(POD.read_text())
    other = json.loads(POD.read_text())
    other["metadata"]["name"] = "web-7d9f8b6c5d-aaaaa"
    other["status"]["containerStatuses"][0]["state"] = {"running": {}}
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, other]}))
    assert main(["diagnose", "--pod-json", str(listing), "--events-json", str(EVENTS),
                 "-o", "json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert [len(o["diagnoses"]) for o in out] == [1, 0]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"kind": "Deployment"}', "expected kind Pod"),
    ("[1, 2]", "must hold a Kubernetes object"),
])
def test_unusable_input_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     content: str, message: str) -> None:
    bad = tmp_path / "pod.json"
    bad.write_text(content)
    assert main(["diagnose", "--pod-json", str(bad)]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--pod-json", "/nonexistent/pod.json"]) == EXIT_BAD_INPUT
    assert "cannot read /nonexistent/pod.json" in capsys.readouterr().err


def test_unknown_command_and_missing_pod_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == EXIT_BAD_INPUT
    assert main(["diagnose"]) == EXIT_BAD_INPUT
    assert "NAMESPACE/POD" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_api_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{_closed_port()}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    assert main(["diagnose", "shop/web", "--kubeconfig", str(kubeconfig)]) == EXIT_KUBE
    err = capsys.readouterr().err
    assert "unreachable" in err and "Traceback" not in err


def test_broken_kubeconfig_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    assert main(["diagnose", "shop/web", "--kubeconfig", str(kubeconfig)]) == EXIT_KUBE
    assert "configuration" in capsys.readouterr().err
