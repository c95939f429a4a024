"""Test-only servers: real `docker-registry` processes, a token server, and stdlib HTTP stubs.

Why a package: the registry client (bot/registry/client.py) must be proven against the real
distribution server's wire behaviour (challenges, error bodies, TLS failures), and against stubs
only for what cannot run here (Docker Hub, pagination, rate limits, dead hosts). Fixtures live in
`tests.support.fixtures`; enable them with `pytest_plugins = ["tests.support.fixtures"]`.
"""
