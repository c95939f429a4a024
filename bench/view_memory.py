"""What the bot's per-pod and per-event structures cost in memory (prints figures, not a test).

    .venv/bin/python bench/view_memory.py [--pods N] [--events N]

Measured with tracemalloc (Python's own allocations, so the figures are the structures' and
nothing else's), each structure fed as the bot feeds it:

* **the pod view** (bot/kube/view.py `PodView`): N Pending pods applied as watch events
  (`ADDED`), each pod a fresh object parsed from JSON as the watch delivers it, then the
  parsed object dropped. Three kinds: a Pending pod that does not fail a pull (only its
  `SlimPod` is kept), a failing pod (its `SlimPod` plus its diagnosis document), and a failing
  pod beyond ``VIEW_MAX_DOCUMENTS`` (the `SlimPod` alone: the pipeline reads that pod with a GET
  when it diagnoses it).
* **the event watch's processed map** (bot/kube/watch.py `EventWatcher._processed`): N
  distinct events handled; the map is capped at ``_SEEN_LIMIT`` entries.
* **a relist of the pod view** (``--relist N``, 0 to skip): N failing Pending pods listed from
  the scenario cluster through the real client, 500 a page; the peak of Python's allocations
  while the whole pods are read and projected page by page (what the view does) against
  reading all pages first and projecting after (what it did). The scenario cluster runs in
  this process, so both peaks include its own page being written.

The pods are the scenario factory's (bot/sim/factory.py `failing_deployment`: one container,
an image on a private registry, containerd's "not found" error as the kubelet's message); a
real pod's extra fields (managed fields, env, volumes, annotations) are not kept by the view,
so they do not change these figures. Per-pod figures are the growth divided by N.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.kube.client import KubeClient  # noqa: E402
from bot.kube.view import PENDING, PodView, SlimPod  # noqa: E402
from bot.kube.watch import EventWatcher  # noqa: E402
from bot.sim import factory  # noqa: E402
from bot.sim.server import SimCluster  # noqa: E402
from bot.store import MemoryStore  # noqa: E402

REPLICAS = 20  # pods per Deployment


def pods(n: int, *, failing: bool, tag: str) -> list[str]:
    """`n` Pending pods as JSON text (as the watch delivers them), failing a pull or not."""
    out: list[str] = []
    for d in range((n + REPLICAS - 1) // REPLICAS):
        image = f"registry.internal.example.com/payments/{tag}-app-{d}:v1.4.{d}"
        objects = factory.failing_deployment(
            f"team-{d % 10}", f"{tag}-app-{d}", image,
            factory.containerd_error("not_found", image), replicas=REPLICAS)
        for obj in objects:
            if obj["kind"] != "Pod":
                continue
            if not failing:  # Pending, past its pull: ContainerCreating
                obj["status"]["containerStatuses"][0]["state"] = {
                    "waiting": {"reason": "ContainerCreating"}}
            out.append(json.dumps(obj))
    return out[:n]


def events(n: int) -> list[str]:
    objects = factory.failing_deployment("shop", "web", "registry.internal/shop/web:v3",
                                         factory.containerd_error(
                                             "not_found", "registry.internal/shop/web:v3"))
    event = next(o for o in objects if o["kind"] == "Event" and o["reason"] == "Failed")
    out = []
    for i in range(n):
        event["metadata"]["uid"] = f"{i:08d}-5b0e-4c44-9a55-{i:012d}"
        event["metadata"]["resourceVersion"] = str(100_000 + i)
        out.append(json.dumps(event))
    return out


def measure(feed: Any, texts: list[str]) -> float:
    """Bytes still allocated after `feed` took every object (parsed one at a time), per object."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for text in texts:
        feed(json.loads(text))
    gc.collect()
    return (tracemalloc.get_traced_memory()[0] - before) / len(texts)


def relist_peaks(n: int) -> tuple[float, float]:
    """Peak MB above the start while listing `n` failing Pending pods: (all pages read,
    then projected; projected page by page)."""
    objects = [json.loads(text) for text in pods(n, failing=True, tag="listed")]
    with tempfile.TemporaryDirectory() as tmp, SimCluster(objects=objects) as sim:
        del objects
        kube = KubeClient.from_environment(str(sim.write_kubeconfig(Path(tmp) / "kc")))
        peaks = []
        for projected in (False, True):
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            if projected:
                slim, _ = kube.list_pods_projected(None, SlimPod.of, field_selector=PENDING)
            else:
                whole, _ = kube.list_pods_at(None, field_selector=PENDING)
                slim = [SlimPod.of(p) for p in whole]
                del whole
            assert len(slim) == n
            peaks.append((tracemalloc.get_traced_memory()[1] - base) / 1e6)
            tracemalloc.stop()
            del slim
    return peaks[0], peaks[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--relist", type=int, default=2_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="log: %(message)s")
    n = args.pods
    pending, failing, beyond = (pods(n, failing=False, tag="ok"),
                                pods(n, failing=True, tag="bad"),
                                pods(n, failing=True, tag="over"))
    seen = events(args.events)

    tracemalloc.start()
    view = PodView(None, max_documents=n)  # type: ignore[arg-type]  # not started: no client
    scope = view.scopes[0]
    rows = [
        ("Pending pod, not failing (SlimPod)", measure(lambda o: scope.apply("ADDED", o),
                                                       pending)),
        ("failing pod (SlimPod + diagnosis document)",
         measure(lambda o: scope.apply("ADDED", o), failing)),
        ("failing pod beyond the document cap (SlimPod)",
         measure(lambda o: scope.apply("ADDED", o), beyond)),
    ]
    assert view.documents == n and len(view) == 3 * n, (view.documents, len(view))
    watcher = EventWatcher(None, MemoryStore(), lambda signal: None)  # type: ignore[arg-type]
    rows.append(("processed event (EventWatcher map entry)",
                 measure(lambda o: watcher._handle(o), seen)))
    tracemalloc.stop()

    print(f"{n:,} pods of each kind, {len(seen):,} events; bytes per object (tracemalloc):")
    for what, size in rows:
        print(f"  {what:<48} {size:8,.0f} B")
    per_failing = rows[1][1]
    print(f"  => {n:,} failing pods in the view: {per_failing * n / 1e6:,.1f} MB; "
          f"the processed map at its cap ({len(watcher._processed):,}): "
          f"{rows[3][1] * len(watcher._processed) / 1e6:,.1f} MB")
    if args.relist:
        whole, paged = relist_peaks(args.relist)
        print(f"relist of {args.relist:,} failing Pending pods, peak of allocations: "
              f"{whole:,.1f} MB reading every page first, {paged:,.1f} MB projecting page by "
              f"page")


if __name__ == "__main__":
    main()

