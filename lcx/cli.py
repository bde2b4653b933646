"""The ``lcx`` command line: ``lcx serve`` and the operator commands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from lcx.api.http_server import HttpBinding
from lcx.config import Settings, effective_instance_id, load_settings, resolve_config_path
from lcx.errors import ConfigError, LcxError
from lcx.logs import bind_global, configure_logging

log = logging.getLogger("lcx")

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``lcx`` subcommand."""
    parser = argparse.ArgumentParser(prog="lcx", description="lcx livechat exchange")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run an lcx instance")
    serve.add_argument("--config", help="configuration file (default: $LCX_CONFIG, "
                                        "else the embedded defaults)")
    return parser


def load(config: str | None) -> Settings:
    """The settings named by ``--config`` / ``LCX_CONFIG``, or the embedded defaults.

    Raises:
        ConfigError: the file is missing or invalid (the message names the key).
    """
    return load_settings(resolve_config_path(config))


def _announce(binding: HttpBinding) -> None:
    print(f"lcx is listening on {binding.url}", flush=True)
    log.info("listening", extra={"url": binding.url})


def serve_command(args: argparse.Namespace) -> int:
    """Run ``lcx serve``; returns the exit code."""
    from lcx.app import serve

    settings = load(args.config)
    configure_logging(settings.log.level, settings.log.format)
    bind_global(instanceId=effective_instance_id(settings))
    log.info("starting", extra={"store": settings.store.url.split("://", 1)[0],
                                "cluster": bool(settings.cluster.redis_url)})
    return trio.run(lambda: serve(settings, on_listening=_announce))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lcx`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve_command(args)
    except ConfigError as exc:
        print(f"lcx: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LcxError as exc:
        print(f"lcx: {exc}", file=sys.stderr)
        return 1
    return 0  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
