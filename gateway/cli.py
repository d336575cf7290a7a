"""``eldercare gateway --config FILE`` and ``eldercare models train-fall|eval-fall``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser("gateway", help="run the nursing-home gateway (until SIGTERM or Ctrl-C)")
    gateway.add_argument("--config", type=Path, required=True, help="the gateway's TOML configuration")
    gateway.add_argument("--check", action="store_true", help="only validate the configuration and mappings")
    gateway.set_defaults(handler=_gateway)

    models = sub.add_parser("models", help="the edge fall detector's model: train it, score it")
    which = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    train = which.add_parser("train-fall", help="train the fall model from recordings (.npz + .csv index)")
    train.add_argument("--data", type=Path, required=True, help="recordings in the format of shared/data/sisfall")
    train.add_argument("--out", type=Path, default=None, help="model file to write (default: the shipped model)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--jobs", type=int, default=2, help="CPU cores to train on")
    train.set_defaults(handler=_train)

    score = which.add_parser("eval-fall", help="score a fall model trial by trial (or cross-validate training)")
    score.add_argument("--data", type=Path, required=True)
    score.add_argument("--model", type=Path, default=None, help="model file (default: the shipped model)")
    score.add_argument("--cross-validate", type=int, default=None, metavar="K", help="K subject-wise folds")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.add_argument("--chunk", type=int, default=25, help="samples per chunk, as a wearable sends them")
    score.add_argument("--seed", type=int, default=0, help="fold assignment and training seed")
    score.add_argument("--jobs", type=int, default=2)
    score.set_defaults(handler=_eval)


def _gateway(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from eldercare.gateway import config as gateway_config
    from eldercare.gateway.errors import GatewayError
    from eldercare.gateway.service import Gateway

    try:
        config = gateway_config.load(args.config)
        gateway = Gateway(config, config_path=args.config)
    except GatewayError as exc:
        print(f"eldercare gateway: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: valid ({len(config.sources)} source(s), vendors {', '.join(sorted(gateway.mappings))})")
        return 0

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gateway.run(stop)

    try:
        asyncio.run(main())
    except GatewayError as exc:
        print(f"eldercare gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"eldercare gateway: {exc}", file=sys.stderr)
        return 1
    except ExceptionGroup:  # a part failed in a way it could not handle: stop, loudly, and let systemd restart it
        log.critical("gateway: stopped by an unexpected error", exc_info=True)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    import time

    from eldercare.gateway.errors import GatewayError
    from eldercare.gateway.fall import data, model, train

    out = args.out or model.shipped_model_path()
    started = time.monotonic()
    try:
        dataset = data.load(args.data)
        trained = train.train(dataset, seed=args.seed, n_jobs=args.jobs)
    except GatewayError as exc:
        print(f"eldercare models train-fall: {exc}", file=sys.stderr)
        return 2
    model.save(trained, out)
    inner = trained.meta["inner_cv"]
    print(
        f"wrote {out} ({out.stat().st_size // 1024} KiB, {trained.forest.n_nodes} nodes) in"
        f" {time.monotonic() - started:.0f} s: {len(dataset.trials)} trials, {trained.meta['candidates']} candidates,"
        f" threshold {trained.threshold:.2f} (inner {inner['folds']}-fold CV: sensitivity {inner['sensitivity']:.4f},"
        f" specificity {inner['specificity']:.4f})"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from eldercare.gateway.errors import GatewayError
    from eldercare.gateway.fall import data, evaluate, model

    try:
        dataset = data.load(args.data)
        if args.cross_validate is not None:
            report = evaluate.cross_validate(
                dataset, k=args.cross_validate, seed=args.seed, chunk=args.chunk, n_jobs=args.jobs
            )
        else:
            report = evaluate.evaluate(model.load(args.model), dataset, chunk=args.chunk)
    except (GatewayError, ValueError) as exc:
        print(f"eldercare models eval-fall: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict()) if args.json else report.text())
    return 0
