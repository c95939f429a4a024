#!/usr/bin/env bash
# Make sure the CNCF distribution server (Debian package `docker-registry`, 2.8.x) is installed.
#
# Why: tests/support/registry.py starts real `docker-registry serve` processes on loopback so the
# registry client is tested against the real server's 401/404/TLS behaviour, not our guess of it.
# The package's postinst cannot start a daemon here; the tests run `docker-registry serve` themselves.
#
# Idempotent and quiet: prints exactly one line saying what it did. Called from `make test`.
set -euo pipefail

if command -v docker-registry >/dev/null 2>&1; then
    echo "docker-registry: already installed ($(command -v docker-registry))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "docker-registry: not installed and not root; run 'sudo $0' or" \
         "'apt-get install -y --no-install-recommends docker-registry'" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

install_pkg() {
    # policy-rc.d exit 101 keeps the postinst from trying to start the service (no init here).
    apt-get install -y -q --no-install-recommends docker-registry >>"$log" 2>&1
}

if install_pkg; then
    how="installed"
else
    # Most likely cause on a fresh machine: no package lists yet ("Unable to locate package").
    if apt-get update -q >>"$log" 2>&1 && install_pkg; then
        how="installed (after apt-get update)"
    else
        echo "docker-registry: apt-get install failed; last lines of its output:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
fi

if ! command -v docker-registry >/dev/null 2>&1; then
    # dpkg may report a failed postinst (it tries to start a service) yet leave the binary in place;
    # only a missing binary is fatal.
    echo "docker-registry: package step finished but the binary is not on PATH" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
echo "docker-registry: $how ($(docker-registry --version 2>/dev/null | head -n1))"
