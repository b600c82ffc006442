"""``buildhook``: serve, web, worker, migrate and trigger administration."""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from builder.accounts.audit import cli_actor, record
from builder.container import Container
from builder.db.engine import make_engine, migrate
from builder.errors import BuildhookError, InputError, TransientError
from builder.forges.registry import provider_names
from builder.triggers.rules import RuleSpec, rule_at
from builder.settings import ConfigError, Settings
from builder.triggers.services import TriggerSpec, create_trigger, trigger_to_dict
from buildhook.admin_commands import add_admin_commands
from buildhook.deploy_commands import add_deploy_commands
from buildhook.local_state import local_env
from buildhook.metrics_dir import use_metrics_dir
from buildhook.serve import cmd_serve


def load_settings(create_key: bool = False) -> Settings:
    return Settings.from_env(local_env(create=create_key))


def start(args: argparse.Namespace) -> Container:
    """The one start-up path of every command: settings, then the schema (only for commands that write:
    ``writes``), then the application container, built as the web app and the worker build theirs."""
    from workers.celery_app import container_for

    settings = load_settings(create_key=getattr(args, "creates_key", False))
    if getattr(args, "metrics_group", None):
        use_metrics_dir(settings.data_dir, args.metrics_group)  # before anything imports prometheus_client
    if getattr(args, "writes", True):
        migrate(settings.database_url, settings.secret_key)
    elif not has_schema(settings.database_url):
        settings = settings.with_(database_url=empty_database())  # nothing there yet: it reads as empty
    return container_for(settings)


def has_schema(url: str) -> bool:
    """Whether migrations ever ran on ``url`` (without creating a SQLite file that is not there)."""
    from sqlalchemy import inspect

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False
    engine = make_engine(url)
    try:
        return inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def empty_database() -> str:
    """A throwaway database with the schema and no rows, removed when the command ends: what a read-only
    command reads when the real one was never migrated (which it leaves untouched)."""
    directory = tempfile.mkdtemp(prefix="buildhook-empty-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    url = f"sqlite:///{directory}/empty.db"
    migrate(url)
    return url


# --- processes ---------------------------------------------------------------


def require_docker(settings: Settings) -> None:
    from builder.builds.image.classic import connect

    try:
        connect(settings.docker_host, timeout=5).close()
    except TransientError as exc:
        raise SystemExit(
            f"buildhook: {exc}\nbuildhook needs a running Docker Engine: start dockerd, "
            "or point DOCKER_HOST at one."
        ) from None


def require_build_engine(settings: Settings, say: bool = True) -> None:
    """Say which engine and client build images (unless ``say`` is false: ``serve`` checks early and leaves
    the saying to its worker); refuse to start when BuildKit has no usable client."""
    from builder.builds.image.engines import engine_for

    try:
        engine = engine_for(settings)
    except ConfigError as exc:
        raise SystemExit(f"buildhook: {exc}") from None
    if say:
        print(f"buildhook: images are built with {engine.describe()} (BUILDHOOK_BUILD_ENGINE={engine.kind})",
              file=sys.stderr)


def cmd_web(args: argparse.Namespace, container: Container) -> int:
    from gunicorn.app.base import BaseApplication

    from webhooks import create_app

    settings = container.settings
    settings = settings.with_(listen_address=settings.listen_address or f"{args.host}:{args.port}")
    container.engine.dispose()  # each gunicorn worker's app builds its own container from the settings

    class WebServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", "buildhook.access_log.RedactingLogger")  # no ?token= in the log
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("child_exit", _metrics_child_exit)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn 27's one socket per user: two
                self.cfg.set("control_socket_disable", True)   # servers (or users' and tests') would clash

        def load(self):  # type: ignore[no-untyped-def]
            app = create_app(settings)
            # Everything loaded so far lives as long as the worker: out of the collector's sight,
            # a full collection no longer walks it. Before, one took ~200 ms on these machines and
            # stalled every request of the worker (and, through the SQLite write lock, the others').
            gc.collect()
            gc.freeze()
            return app

    WebServer().run()
    return 0


def _metrics_child_exit(_server: object, worker: object) -> None:
    """gunicorn's child_exit hook: the multiprocess bookkeeping of a worker that ended."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def cmd_worker(args: argparse.Namespace, container: Container) -> int:
    from celery.signals import worker_process_shutdown

    from workers.celery_app import celery_of
    from workers.periodic import run_when_worker_ready

    require_build_engine(container.settings)
    worker_process_shutdown.connect(_metrics_process_dead, weak=False)
    run_when_worker_ready(container, args.relay_interval)  # the relay, reaper, schedules and retention sweep
    celery_of(container).worker_main(
        ["worker", "--loglevel=INFO", f"--concurrency={args.concurrency}", "--without-gossip",
         "--without-mingle"]
    )
    return 0


def _metrics_process_dead(**_kwargs: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())


def cmd_migrate(_args: argparse.Namespace, _container: Container) -> int:
    print("buildhook: database is up to date")
    return 0


# --- triggers ------------------------------------------------------------------


def cmd_triggers_add(args: argparse.Namespace, container: Container) -> int:
    settings = container.settings
    rules = []
    for position, text in enumerate(args.rule):
        with rule_at(position):
            try:
                rules.append(RuleSpec.from_json(json.loads(text)))
            except ValueError as exc:
                raise InputError(f"--rule must be a JSON object: {exc}") from None
    spec = TriggerSpec(
        provider=args.provider,
        repository=args.repository,
        clone_url=args.clone_url,
        secret=args.secret,
        image=args.image,
        dockerfile=args.dockerfile,
        context=args.context,
        default_branch=args.default_branch,
        rules=tuple(rules),
        supersede=not args.no_supersede,
        api_url=args.api_url,
        status_token=args.status_token,
        clone_username=args.clone_username,
        clone_token=args.clone_token,
        ssh_key=_read(args.ssh_key_file),
        ssh_known_hosts=_read(args.known_hosts_file),
        build_timeout=args.build_timeout,
        max_concurrent=args.max_concurrent,
        schedule=args.schedule,
        public_badge=args.public_badge,
    )
    with container.sessions() as session:
        trigger = create_trigger(session, container.box, spec, settings.registry,
                                 allow_file_clones=settings.allow_file_clones)
        record(session, cli_actor(), "trigger.created", f"trigger {trigger.id}")
        session.commit()
        shown = trigger_to_dict(trigger, settings.public_url)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"Trigger {shown['id']} created for {shown['provider']} repository {shown['repository']}.")
    print(f"Webhook URL:  {shown['webhook_url']}")
    print("Content type: application/json")
    print("Secret:       the --secret you gave (it is stored encrypted and never shown again)")
    print("Events:       push")
    return 0


def _read(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def cmd_triggers_list(args: argparse.Namespace, container: Container) -> int:
    from sqlalchemy import select

    from builder.db.models import Trigger

    settings = container.settings
    with container.sessions() as session:
        shown = [trigger_to_dict(t, settings.public_url) for t in session.scalars(select(Trigger).order_by(Trigger.id))]
    if args.json:
        print(json.dumps({"triggers": shown}, indent=2))
        return 0
    if not shown:
        print("No triggers yet: buildhook triggers add --help")
    for t in shown:
        state = "" if t["enabled"] else " (disabled)"
        print(f"{t['id']:>4}  {t['provider']:<9} {t['repository']:<30} -> {t['image']}{state}")
        print(f"      webhook: {t['webhook_url']}  clone: {t['clone_url']}  default branch: {t['default_branch']}"
              + (f"  build timeout: {t['build_timeout']} s" if t["build_timeout"] else ""))
        if t["max_concurrent"] or t["schedule"]:
            print("     " + (f" max concurrent: {t['max_concurrent']}" if t["max_concurrent"] else "")
                  + (f" schedule: {t['schedule']} UTC " + (f"(next {t['schedule_next_at']})" if t["enabled"]
                                                              else "(paused: the trigger is disabled)")
                     if t["schedule"] else ""))
        for number, rule in enumerate(t["rules"], 1):
            extras = (f", rebuild {rule['rebuild']}" if rule["rebuild"] != "changed" else "") + (
                f", keep {rule['retention']['keep']}" if rule["retention"] else "")
            print(f"      rule {number}: {rule['source']} {rule['match']} {rule['pattern']!r} -> "
                  f"{', '.join(rule['tags'])} ({rule['dockerfile']}, context {rule['context']}{extras})")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="buildhook", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app and a worker (and a private Redis and registry "
                                         "when none is set)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--concurrency", type=int, default=2, help="builds run at once")
    serve.set_defaults(func=cmd_serve, writes=True, creates_key=True)

    web = sub.add_parser("web", help="run the web app (gunicorn)")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--workers", type=int, default=2)
    web.add_argument("--threads", type=int, default=8)
    web.set_defaults(func=cmd_web, writes=True, metrics_group="web")

    worker = sub.add_parser("worker", help="run a Celery build worker")
    worker.add_argument("--concurrency", type=int, default=2)
    worker.add_argument("--relay-interval", type=float, default=5.0,
                        help="seconds between outbox relay passes")
    worker.set_defaults(func=cmd_worker, writes=True, metrics_group="worker")

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=cmd_migrate, writes=True)

    triggers = sub.add_parser("triggers", help="manage build triggers")
    tsub = triggers.add_subparsers(dest="triggers_command", required=True)
    add = tsub.add_parser("add", help="add a trigger")
    add.add_argument("--provider", required=True, help="the Git host: " + ", ".join(provider_names()))
    add.add_argument("--repository", required=True, help="OWNER/NAME as the Git host names it")
    add.add_argument("--clone-url", required=True)
    add.add_argument("--secret", required=True, help="the webhook secret set on the Git host")
    add.add_argument("--image", required=True, help="repository to push to, e.g. team/app")
    add.add_argument("--dockerfile", default="Dockerfile")
    add.add_argument("--context", default=".")
    add.add_argument("--default-branch", default="main")
    add.add_argument("--rule", action="append", default=[], metavar="JSON",
                     help="a build rule as JSON, tried in the order given (see README); "
                          "default: every branch and every tag")
    add.add_argument("--no-supersede", action="store_true",
                     help="keep queued builds of a ref when a newer push arrives")
    add.add_argument("--api-url", help="the host's API base URL, for commit statuses")
    add.add_argument("--status-token", help="an access token that may set commit statuses")
    add.add_argument("--clone-username", help="user name sent with --clone-token")
    add.add_argument("--clone-token", help="an HTTPS access token for a private repository")
    add.add_argument("--ssh-key-file", help="an SSH deploy key (private key file) for a private repository")
    add.add_argument("--known-hosts-file", help="known_hosts lines for the SSH host (required with a key)")
    add.add_argument("--build-timeout", type=int, metavar="SECONDS",
                     help="stop and fail a build after this long (default: BUILDHOOK_BUILD_TIMEOUT)")
    add.add_argument("--max-concurrent", type=int, metavar="N",
                     help="builds of this trigger running at once; the others wait queued (default: no limit)")
    add.add_argument("--schedule", metavar="CRON",
                     help='rebuild the default branch\'s tip at these times: five cron fields, UTC, e.g. "0 3 * * 1"')
    add.add_argument("--public-badge", action="store_true",
                     help="its status badge (/badge/ID.svg) answers without sign-in, for a public README")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=cmd_triggers_add, writes=True, creates_key=True)
    lst = tsub.add_parser("list", help="list triggers with their webhook URLs")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_triggers_list, writes=False)

    run = sub.add_parser("run", help="run a trigger now on a branch, a tag or a commit",
                         description="Build a branch tip, a tag, or a commit (of the trigger's default "
                                     "branch, or of --branch) now, as if it had been pushed.")
    run.add_argument("trigger", type=int, metavar="TRIGGER", help="the trigger id (buildhook triggers list)")
    run.add_argument("--branch", help="build the tip of this branch (or, with --sha, the branch the commit is on)")
    run.add_argument("--tag", help="build the commit of this tag")
    run.add_argument("--sha", help="build this commit (7-40 hex digits)")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_run, writes=True)
    add_admin_commands(sub)
    add_deploy_commands(sub)
    return top


def cmd_run(args: argparse.Namespace, services: Container) -> int:
    """Create the run's builds and hand them to the broker, as ``POST /api/triggers/<id>/runs`` does."""
    from builder.builds.queries import build_to_dict, get_build
    from builder.builds.manual_runs import start_run
    from builder.triggers.services import get_trigger

    settings = services.settings
    with services.sessions() as session:
        trigger = get_trigger(session, args.trigger)
        ids = [b.id for b in start_run(session, trigger, settings, branch=args.branch, tag=args.tag, sha=args.sha,
                                       by=cli_actor())]
    pending = services.start_builds(ids)
    with services.sessions() as session:
        builds = [build_to_dict(get_build(session, build_id)) for build_id in ids]
    for build in builds:
        build["url"] = f"{settings.public_url}/builds/{build['id']}"
    if args.json:
        print(json.dumps({"builds": builds, "undispatched": pending}, indent=2))
    else:
        first = builds[0]
        print(f"Trigger {args.trigger}: {len(builds)} build(s) of {first['ref_type']} {first['ref_name']} "
              f"at {first['short_sha']} queued.")
        for build in builds:
            print(f"Build {build['id']}: {build['url']}  ({build['image']}: {', '.join(build['tags'])})")
    if pending:
        print(f"The broker is not reachable: build(s) {', '.join(map(str, pending))} stay queued and a "
              "worker's outbox relay sends them once it is back.", file=sys.stderr if args.json else sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args, start(args)) or 0)
    except (ConfigError, BuildhookError) as exc:
        print(f"buildhook: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
