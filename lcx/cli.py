"""The ``lcx`` command line: ``lcx serve`` and the operator commands."""

from __future__ import annotations

import argparse
import gc
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec
import trio

from lcx.api.console import console_url
from lcx.api.http_server import HttpBinding
from lcx.auth import SCOPES, dev_secret_dir, mint_token, resolve_secret
from lcx.cli_status import add_status_parser, status_command
from lcx.config import (
    ServerConfig,
    Settings,
    effective_instance_id,
    load_settings,
    resolve_config_path,
)
from lcx.config_checks import start_warnings
from lcx.demo import Demo, demo_settings, welcome
from lcx.errors import ConfigError, LcxError
from lcx.logs import bind_global, configure_logging
from lcx.runtime.gc_pacing import GcPacer
from lcx.startup import StartupFailure, preflight
from lcx.version import lcx_version

if TYPE_CHECKING:
    from lcx.store import Store, Tx
    from lcx.store.edges import FailedInboxRow
    from lcx.store.outbox import OutboxRow

log = logging.getLogger("lcx")

GC_FULL_AFTER = 100
"""Collections of the middle generation between two full ones (Python's default: 10)."""
EXIT_CONFIG = 2
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``lcx`` subcommand."""
    parser = argparse.ArgumentParser(prog="lcx", description="lcx livechat exchange")
    parser.add_argument("--version", action="version", version=f"lcx {lcx_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run an lcx instance")
    serve.add_argument("--config", help="configuration file (default: $LCX_CONFIG, "
                                        "else the embedded defaults: the demo)")
    serve.add_argument("--port", type=int, help="listen on this port instead of "
                                                "server.port (0: any free port)")
    _add_token_parser(commands)
    _add_dlq_parser(commands)
    add_status_parser(commands)
    return parser


def _words(text: str) -> list[str]:
    return [word for word in re.split(r"[\s,]+", text) if word]


def _scope_list(text: str) -> list[str]:
    scopes = _words(text)
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise argparse.ArgumentTypeError(
            f"unknown scope {', '.join(unknown) or repr(text)}; expected one of "
            f"{', '.join(sorted(SCOPES))}")
    return scopes


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s) base URL, got {text!r}")
    return text.rstrip("/")


def _add_token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token", help="print a token signed with the configured secret (development, tests)",
        description="Print an HS256 bearer token signed with auth.jwt_secret or, when it is "
                    "empty, the development secret in this user's data directory (which "
                    "lcx serve run by the same user also uses).")
    token.add_argument("--scope", action="append", type=_scope_list, required=True,
                       help="bot, agent, supervisor, service or admin; repeat it or separate "
                            "several with spaces or commas")
    token.add_argument("--sub", required=True, help="the caller: agent id, bot id or service")
    token.add_argument("--org", help="organization id (required unless the scope is admin)")
    token.add_argument("--groups", type=_words, default=[],
                       help="comma-separated user-group ids the agent serves")
    token.add_argument("--tenants", type=_words, default=None,
                       help="comma-separated tenant ids a bot token may act for")
    token.add_argument("--name", help="display name of an agent")
    token.add_argument("--ttl", type=_positive_int, default=3600,
                       help="lifetime in seconds (default: 3600)")
    token.add_argument("--config", help="configuration file (default: $LCX_CONFIG, "
                                        "else the embedded defaults)")
    token.add_argument("--console", action="store_true",
                       help="print the agent console's sign-in URL (server.public_url + "
                            "/console/?token=...) instead of the bare token")
    token.add_argument("--url", type=_base_url, default=None,
                       help="with --console: the server's base URL, e.g. the one "
                            "`lcx serve --port 0` printed (default: server.public_url)")


def load(config: str | None) -> Settings:
    """The settings named by ``--config`` / ``LCX_CONFIG``, or the demo's (the embedded
    defaults and the demo tenant, :mod:`lcx.demo`).

    Raises:
        ConfigError: the file is missing or invalid (the message names the key).
    """
    return load_serving(config, None)[0]


def load_serving(config: str | None, port: int | None) -> tuple[Settings, Demo | None]:
    """The settings ``lcx serve`` runs with (``port`` overriding ``server.port``), and the
    demo tenant when no configuration file is given.

    Raises:
        ConfigError: the file is missing or invalid (the message names the key).
    """
    path = resolve_config_path(config)
    settings = load_settings(path)
    if port is not None:
        settings = _with_port(settings, port)
    if path is not None:
        return settings, None
    return demo_settings(settings)


def _announcer(settings: Settings, demo: Demo | None) -> Callable[[HttpBinding], None]:
    """What ``lcx serve`` prints once it listens: where, the console, and the demo's URLs."""

    def announce(binding: HttpBinding) -> None:
        print(f"lcx is listening on {binding.url}", flush=True)
        print(f"agent console: {console_url(binding.url)}", flush=True)
        if demo is not None:
            auth = settings.auth
            print(welcome(binding.url, resolve_secret(auth, dev_secret_dir()),
                          issuer=auth.issuer, audience=auth.audience), flush=True)
        log.info("listening", extra={"url": binding.url, "console": console_url(binding.url),
                                     "demo": demo is not None})

    return announce


def _with_port(settings: Settings, port: int) -> Settings:
    """``settings`` listening on ``port``; a default ``public_url`` follows it."""
    server = settings.server
    default = ServerConfig()
    public_url = server.public_url
    if public_url == default.public_url and port:
        public_url = f"http://{server.host}:{port}"
    return msgspec.structs.replace(settings, server=msgspec.structs.replace(
        server, port=port, public_url=public_url))


def serve_command(args: argparse.Namespace) -> int:
    """Run ``lcx serve``; returns the exit code."""
    from lcx.instance import serve

    settings, demo = load_serving(args.config, args.port)
    configure_logging(settings.log.level, settings.log.format)
    bind_global(instanceId=effective_instance_id(settings))
    trio.run(preflight, settings)
    log.info("starting", extra={"store": settings.store.url.split("://", 1)[0],
                                "cluster": bool(settings.cluster.redis_url),
                                "version": lcx_version()})
    for warning in start_warnings(settings):
        log.warning(warning)
    _settle_garbage_collector()
    return trio.run(lambda: serve(settings, on_listening=_announcer(settings, demo),
                                  demo=demo))


def _settle_garbage_collector() -> None:
    """Keep the cyclic collector's pauses short on a busy instance: what was loaded to
    start (modules, classes, settings: ~100,000 objects) is never scanned again, the
    full collections (which scan every live object: 0.13-0.59 s each, measured with
    1,000 sockets and 1,000 open conversations on the loaded 2-core machine, 7-8 of them
    in 1,000 ``POST /requests``) come ten times less often, and each walks only what came
    since the last one (:class:`~lcx.runtime.gc_pacing.GcPacer`). Garbage is still
    collected, later."""
    gc.collect()
    gc.freeze()
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, GC_FULL_AFTER)
    GcPacer().install()


def token_command(args: argparse.Namespace) -> int:
    """Run ``lcx token``: print a signed token on stdout; returns the exit code.

    Raises:
        ConfigError: the configuration is invalid, or has no HS256 secret to sign with.
    """
    scopes = list(dict.fromkeys(scope for group in args.scope for scope in group))
    if not args.org and "admin" not in scopes:
        print("lcx token: --org is required unless --scope includes admin", file=sys.stderr)
        return EXIT_USAGE
    settings = load(args.config)
    auth = settings.auth
    secret = resolve_secret(auth, dev_secret_dir())
    token = mint_token(secret, sub=args.sub, org=args.org or None, scopes=scopes,
                       groups=args.groups, tenants=args.tenants, name=args.name,
                       ttl_seconds=args.ttl, issuer=auth.issuer, audience=auth.audience)
    if args.console:
        print(console_url(args.url or _with_port(settings, settings.server.port)
                          .server.public_url, token))
    else:
        print(token)
    return 0


DLQ_BATCH = 500
"""Dead events changed per transaction by ``lcx dlq replay|drop``."""


def _add_dlq_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq", help="list, replay or drop dead-lettered bot events and webhook events")
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    for name, text in (("list", "print dead events, oldest first"),
                       ("replay", "make dead events pending again (the server delivers them)"),
                       ("drop", "delete dead events for good")):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--config", help="configuration file (default: $LCX_CONFIG, "
                                              "else the embedded defaults)")
        action.add_argument("--tenant", help="only the events of this tenant")
        action.add_argument("--id", dest="ids", action="append", metavar="EVENT_ID",
                            help="only this event (repeatable)")
        if name == "list":
            action.add_argument("--limit", type=int, default=100,
                                help="at most this many rows (default: 100)")
        else:
            action.add_argument("--all", action="store_true",
                                help="every dead event (of --tenant); required without --id")


def dlq_command(args: argparse.Namespace) -> int:
    """Run ``lcx dlq list|replay|drop`` against the configured store; the exit code.

    Replayed events are picked up by a running server at its next scan.

    Raises:
        ConfigError: the configuration is invalid.
        StoreError: the store cannot be opened or fails.
    """
    if args.dlq_action != "list" and not args.ids and not args.all:
        print(f"lcx dlq {args.dlq_action}: give --id EVENT_ID (repeatable) or --all",
              file=sys.stderr)
        return EXIT_USAGE
    settings = load(args.config)
    return trio.run(_dlq, settings, args)


async def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    from lcx.store import open_store
    from lcx.store.edges import drop_failed_inbox, list_failed_inbox, replay_failed_inbox
    from lcx.store.outbox import dead_count, list_dead

    async with open_store(settings.store.url) as store:
        known = {tenant.id for tenant in settings.tenants}
        if args.tenant and args.tenant not in known and not await store.read(
                lambda tx: dead_count(tx, args.tenant)
                or list_failed_inbox(tx, args.tenant, 1)):
            # a tenant removed from the configuration may still have dead events to list
            print(f"lcx dlq {args.dlq_action}: unknown tenant {args.tenant!r} (configured: "
                  f"{', '.join(sorted(known)) or 'none'})", file=sys.stderr)
            return EXIT_USAGE
        if args.dlq_action == "list":
            rows = await store.read(lambda tx: list_dead(tx, args.tenant, args.limit,
                                                         ids=args.ids))
            inbox = await store.read(lambda tx: list_failed_inbox(
                tx, args.tenant, args.limit, ids=args.ids))
            clip = not args.ids
            _print_dead(rows, clip=clip, webhooks=bool(inbox))
            _print_failed_inbox(inbox, clip=clip)
            return 0
        done = await _dlq_change(store, args)
        change = replay_failed_inbox if args.dlq_action == "replay" else drop_failed_inbox
        webhooks = await store.transaction(lambda tx: change(tx, args.ids, args.tenant))
    verb = "replayed" if args.dlq_action == "replay" else "dropped"
    print(f"{verb} {done} dead event(s)" +
          (f" and {webhooks} dead webhook event(s)" if webhooks else ""))
    return 0


async def _dlq_change(store: Store, args: argparse.Namespace) -> int:
    """Replay or drop in batches of :data:`DLQ_BATCH`, with progress on stderr."""
    from lcx.store.outbox import dead_count, drop_dead, list_dead, replay_dead

    change: Callable[[Tx, list[str], str | None], int] = (
        replay_dead if args.dlq_action == "replay" else drop_dead)
    total = len(args.ids) if args.ids else await store.read(
        lambda tx: dead_count(tx, args.tenant))
    done = 0
    while rows := await store.read(lambda tx: list_dead(tx, args.tenant, DLQ_BATCH,
                                                        ids=args.ids)):
        changed = await store.transaction(_bound(change, [r.id for r in rows], args.tenant))
        done += changed
        print(f"{args.dlq_action}: {done}/{total}", file=sys.stderr, flush=True)
        if not changed:
            break
    return done


def _bound(change: Callable[[Tx, list[str], str | None], int], ids: list[str],
           tenant: str | None) -> Callable[[Tx], int]:
    return lambda tx: change(tx, ids, tenant)


def _print_dead(rows: Sequence[OutboxRow], *, clip: bool, webhooks: bool = False) -> None:
    """A table of dead events; ``clip``: cut LAST ERROR to 60 characters (whole when the
    operator asked for given events)."""
    if not rows:
        if not webhooks:
            print("no dead events")
        return
    width = 60 if clip else None
    table = [("ID", "TENANT", "CONVERSATION", "TYPE", "ATTEMPTS", "LAST ERROR", "CREATED")]
    table += [(r.id, r.tenant_id, r.conversation_id, r.type, str(r.attempts),
               _clip(r.last_error or "", width), r.created_at) for r in rows]
    _print_table(table)


def _print_failed_inbox(rows: Sequence[FailedInboxRow], *, clip: bool) -> None:
    """Webhook events the edge inbox gave up on (replay or drop them by ``--id``)."""
    if not rows:
        return
    print("dead webhook events:")
    table = [("ID", "TENANT", "EDGE", "CHAT", "ATTEMPTS", "LAST ERROR", "RECEIVED")]
    table += [(r.event_id, r.tenant_id, r.alias, r.external_id, str(r.attempts),
               _clip(r.last_error or "", 60 if clip else None), r.received_at)
              for r in rows]
    _print_table(table)


def _print_table(table: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())


def _clip(text: str, width: int | None) -> str:
    text = " ".join(text.split())
    return text if width is None or len(text) <= width else text[:width - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lcx`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve_command(args)
        if args.command == "token":
            return token_command(args)
        if args.command == "dlq":
            return dlq_command(args)
        if args.command == "status":
            return status_command(args)
    except ConfigError as exc:
        print(f"lcx: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupFailure as exc:
        print(f"lcx: cannot start: {exc}", file=sys.stderr)
        return exc.exit_code
    except LcxError as exc:
        print(f"lcx: {exc}", file=sys.stderr)
        return 1
    return 0  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
