"""Run simulators from the command line until interrupted.

python -m integrations.simulators --system crm --port 8101
python -m integrations.simulators --all --base-port 8101 --tick-every 5
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .server import Simulator, start_simulator
from .systems import SYSTEMS, canonical_system, get_spec
from .world import World


def _read_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return [
            {k: (v if v != "" else None) for k, v in row.items()}
            for row in csv.DictReader(text.splitlines())
        ]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise SystemExit(f"{path}: expected a JSON list of objects")
    return data


def load_rows(directory: Path, system: str) -> dict[str, list[dict[str, Any]]]:
    """``<dir>/<object>.jsonl|json|csv`` (or ``<dir>/<system>/...``) for one system."""
    spec = get_spec(system)
    base = directory / system if (directory / system).is_dir() else directory
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(base.iterdir()):
        if path.suffix not in (".jsonl", ".json", ".csv"):
            continue
        try:
            obj_type = spec.canonical_type(path.stem)
        except KeyError:
            continue
        rows.setdefault(obj_type, []).extend(_read_rows(path))
    if not rows:
        raise SystemExit(
            f"{base}: no files named after {system} object types ({', '.join(spec.object_types)})"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m integrations.simulators",
        description="Serve fake CRM, ERP and help-desk APIs.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--system", help="crm | erp | helpdesk (or hubspot, stripe, zendesk)")
    which.add_argument("--all", action="store_true", help="all three systems")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="with --system; 0 = a free port")
    parser.add_argument(
        "--base-port", type=int, default=0, help="with --all: crm on it, erp on +1, helpdesk on +2"
    )
    parser.add_argument("--customers", type=int, default=30, help="size of the generated world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data",
        type=Path,
        help="a directory of <object>.jsonl|json|csv files instead of "
        "generating (with --all: one sub-directory per system)",
    )
    parser.add_argument(
        "--tick-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="make one live change every SECONDS",
    )
    parser.add_argument("--webhook-url", help="POST signed events for every change here")
    parser.add_argument("--webhook-secret", default="")
    parser.add_argument(
        "--faults", default=None, help="JSON of fault knobs, e.g. '{\"error_rate\": 0.1}'"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)

    systems = list(SYSTEMS) if args.all else [canonical_system(args.system)]
    faults = json.loads(args.faults) if args.faults else None
    sims: list[Simulator] = []
    try:
        for offset, system in enumerate(systems):
            port = (args.base_port + offset if args.base_port else 0) if args.all else args.port
            world = None
            if args.data:
                world = World.from_rows(load_rows(args.data, system), system=system, seed=args.seed)
            sims.append(
                start_simulator(
                    system,
                    world,
                    host=args.host,
                    port=port,
                    seed=args.seed,
                    customers=args.customers,
                    tick_every=args.tick_every,
                    webhook_url=args.webhook_url,
                    webhook_secret=args.webhook_secret,
                    faults=faults,
                )
            )
    except (OSError, ValueError) as exc:
        for sim in sims:
            sim.stop()
        print(f"could not start: {exc}", file=sys.stderr)
        return 1

    for sim in sims:
        counts = ", ".join(f"{n} {t}" for t, n in sim.world.counts().items())
        print(f"{sim.system:<9} {sim.url}  {sim.world.spec.vendor}  ({counts})", flush=True)
    print("ready; Ctrl-C to stop", flush=True)

    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    for sim in sims:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
