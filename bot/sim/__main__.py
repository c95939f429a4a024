"""CLI: serve scenarios until killed (the ``make demo`` cluster).

    python -m bot.sim --scenario bot/sim/scenarios/tag-not-found.yaml --kubeconfig /tmp/kc
    python -m bot.sim --scenario bot/sim/scenarios --port 8001     # every scenario at once
    python -m bot.sim --scenario rate-limited --latency '/api/v1/.*events=0.5'
    python -m bot.sim --list

The first line on stdout is the URL (then the kubeconfig path), so a wrapper can read it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from bot.sim.scenario import bundled_scenarios, load_scenario
from bot.sim.server import SimCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.sim", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario",
        "-s",
        action="append",
        default=[],
        metavar="DIR_OR_FILE_OR_ID",
        help="scenario file, directory of them, or bundled id (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (default)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig pointing here to this path")
    parser.add_argument("--namespace", default="shop", help="kubeconfig context namespace")
    parser.add_argument("--token", help="demand this bearer token (overrides scenarios)")
    parser.add_argument(
        "--latency",
        action="append",
        default=[],
        metavar="PATH_REGEX=SECONDS",
        help="artificial latency for matching request paths (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list bundled scenarios and exit")
    args = parser.parse_args(argv)

    if args.list:
        for path in bundled_scenarios():
            sc = load_scenario(path)
            print(f"{sc.name:32} {sc.description.splitlines()[0] if sc.description else ''}")
        return 0
    if not args.scenario:
        parser.error("at least one --scenario is required (or --list)")

    sim = SimCluster(args.scenario, token=args.token, host=args.host, port=args.port)
    for spec in args.latency:
        pattern, _, seconds = spec.rpartition("=")
        sim.set_latency(pattern, float(seconds))
    sim.start()
    print(sim.url, flush=True)
    if args.kubeconfig:
        print(sim.write_kubeconfig(args.kubeconfig, namespace=args.namespace), flush=True)
    names = ", ".join(s.name for s in sim.scenarios)
    print(f"serving {names} (Kubernetes {sim.kubernetes_version}); Ctrl-C to stop",
          file=sys.stderr, flush=True)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
