"""The scenario cluster: a local fake Kubernetes apiserver, loaded from scenario YAML files.

It speaks the real REST + watch wire format, so the bot talks to it through the official
``kubernetes`` client and a kubeconfig exactly as it talks to a cluster. ``make demo`` runs the
real bot against it (``python -m bot.sim``), and the integration tests use it as a fixture
(``bot.sim.testing``).

Why not kmock (kopf's mock server, kmock 0.8, evaluated from its source)
----------------------------------------------------------------------
kmock's ``KubernetesEmulator`` is a good in-pytest mock for async aiohttp clients, but it does
not serve what this project needs, for concrete reasons found in its source:

* **No standalone server.** ``kmock.Server`` wraps ``aiohttp.test_utils.RawTestServer`` and only
  runs inside ``async with`` on a running event loop (its design centre is the pytest-asyncio
  ``kmock`` fixture); the ``kmock`` CLI only has ``fetch resources``. The demo needs a plain
  process that serves until killed, and the bot's tests call the synchronous ``kubernetes``
  client, which would need a loop-in-a-thread wrapper around kmock anyway.
* **It does not recognise the Python client's watches.** ``parsing.guess_k8s`` treats a GET as
  a watch only for ``watch == 'true'``; the ``kubernetes`` client sends ``?watch=True`` (Python
  ``str(True)`` through ``urlencode``), so every ``Watch().stream(...)`` would get a one-shot
  list instead of a stream.
* **No resourceVersion semantics.** Objects get no ``metadata.resourceVersion``; lists answer
  ``resourceVersion: '...'``; a watch ignores ``resourceVersion``, always re-sends every object as
  ADDED, and has no history, so "resume from RV" and ``410 Gone``/``Expired`` cannot be
  expressed. ``timeoutSeconds`` is a TODO, there are no BOOKMARKs, and stream errors are always
  code 500.
* **No selectors.** ``KubernetesEmulator.__check`` filters by resource, namespace and name only:
  no ``labelSelector``, no ``fieldSelector`` (and no 400 for unsupported field labels), which
  the bot relies on (``involvedObject.name=...`` for events, ``spec.nodeName`` ...).
* **PATCH is a plain dict merge whatever the Content-Type** (``dicts.patch_dict``): lists are
  replaced, so the strategic-merge-patch that ``kubectl set image`` and the Python client send
  (containers merged by ``name``) would wipe sibling containers; generation is never bumped.
* **Not the apiserver's shapes.** List responses lack ``kind``/``apiVersion`` (``PodList``);
  404s say ``reason: Object Not Found`` with a Python traceback in ``details`` instead of
  ``pods "x" not found``/``NotFound``/``{name, kind}``; ``/version`` is hard-coded to
  ``v1.26.4+k3s1``; there is no 403/RBAC or 401/token notion.

Extending it would mean replacing its handlers, its watch loop, its store and its server
runner, i.e. everything but the DSL we do not need. So this package is a small stdlib
implementation (``http.server.ThreadingHTTPServer``, no event loop): ``store`` (objects, one
global RV counter, bounded history, watchers), ``selectors``, ``patching`` (merge,
strategic-merge for the keys the bot touches, RFC 6902 via ``jsonpatch``, which kmock brought
in), ``server`` (``SimCluster``: HTTP + the test-side API) and ``scenario`` (the YAML loader).
"""

from bot.sim.scenario import Scenario, bundled_scenarios, load_scenario
from bot.sim.server import RecordedRequest, SimCluster, running
from bot.sim.store import ApiError

__all__ = [
    "ApiError",
    "RecordedRequest",
    "Scenario",
    "SimCluster",
    "bundled_scenarios",
    "load_scenario",
    "running",
]
