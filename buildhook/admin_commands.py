"""``buildhook deploy-rules``, ``deliveries`` and ``subscriptions``: the deployment side's admin commands."""

from __future__ import annotations

import argparse
import json
import sys

from builder.accounts.audit import cli_actor, record
from builder.container import Container


def _print(data: object) -> None:
    print(json.dumps(data, indent=2))


def cmd_deploy_rules_add(args: argparse.Namespace, services: Container) -> int:
    from builder.deploys.rules import DeployRuleSpec, TargetSpec, create_rule, rule_to_dict
    from builder.registries.credentials import RegistryAccess

    targets = []
    if args.webhook_url:
        targets.append(TargetSpec(kind="webhook", url=args.webhook_url, secret=args.webhook_secret))
    if args.container:
        targets.append(TargetSpec(kind="docker", container=args.container, docker_host=args.docker_host))
    spec = DeployRuleSpec(repository=args.repository, tag=args.tag, environment=args.environment,
                          targets=tuple(targets), tag_match=args.match or "", registry=args.registry or "",
                          auto=not args.manual)
    with services.sessions() as session:
        rule = create_rule(session, services.box, spec, services.settings.target_policy(),
                           RegistryAccess(services.settings))
        record(session, cli_actor(), "deploy_rule.created", f"deploy rule {rule.id}")
        session.commit()
        shown = rule_to_dict(rule)
    if args.json:
        _print(shown)
    else:
        print(f"Deploy rule {shown['id']}: {shown['registry']}/{shown['repository']}:{shown['tag']} "
              f"({shown['tag_match']}) -> {shown['environment']}")
    return 0


def cmd_deploy_rules_list(args: argparse.Namespace, services: Container) -> int:
    from sqlalchemy import select

    from builder.deploys.rules import rule_to_dict
    from builder.db.models import DeployRule

    with services.sessions() as session:
        rules = [rule_to_dict(r) for r in session.scalars(select(DeployRule).order_by(DeployRule.id))]
    if args.json:
        _print({"deploy_rules": rules})
        return 0
    if not rules:
        print("No deploy rules yet: buildhook deploy-rules add --help")
    for rule in rules:
        print(f"{rule['id']:>4}  {rule['repository']}:{rule['tag']} ({rule['tag_match']}) -> {rule['environment']}"
              f"  [registry {rule['registry'] or services.settings.registry}]")
        for target in rule["targets"]:
            where = target["url"] if target["kind"] == "webhook" else f"container {target['container']}"
            print(f"      {target['kind']}: {where}{' (signed)' if target['signed'] else ''}")
    return 0


def cmd_deliveries_list(args: argparse.Namespace, services: Container) -> int:
    from sqlalchemy import select

    from builder.notify.deliveries import delivery_to_dict
    from builder.db.models import OutboundDelivery

    with services.sessions() as session:
        shown = [delivery_to_dict(d) for d in session.scalars(
            select(OutboundDelivery).order_by(OutboundDelivery.id.desc()).limit(args.limit))]
    if args.json:
        _print({"deliveries": shown})
        return 0
    for d in shown:
        print(f"{d['id']:>5}  {d['state']:<9} {d['event']:<22} {d['url']}  attempts {d['attempts']}"
              f"  last {d['last_status_code'] or '-'}")
    return 0


def cmd_deliveries_redeliver(args: argparse.Namespace, services: Container) -> int:
    from builder.notify.deliveries import redeliver

    with services.sessions() as session:
        delivery = redeliver(session, args.id)
        session.commit()
        uuid_ = delivery.uuid
    services.send_deliveries([args.id])
    print(f"Delivery {args.id} ({uuid_}) queued again")
    return 0


def cmd_subscriptions_add(args: argparse.Namespace, services: Container) -> int:
    from builder.notify.subscriptions import create_subscription, subscription_to_dict

    with services.sessions() as session:
        subscription = create_subscription(
            session, services.box, url=args.url, events=args.event, secret=args.secret, trigger_id=args.trigger,
            ref_pattern=args.ref, style=args.style, policy=services.settings.target_policy())
        record(session, cli_actor(), "subscription.created", f"subscription {subscription.id}")
        session.commit()
        shown = subscription_to_dict(subscription)
    _print(shown) if args.json else print(f"Subscription {shown['id']}: {', '.join(shown['events'])} -> {shown['url']}")
    return 0


def cmd_subscriptions_list(args: argparse.Namespace, services: Container) -> int:
    from sqlalchemy import select

    from builder.db.models import Subscription
    from builder.notify.subscriptions import subscription_to_dict

    with services.sessions() as session:
        shown = [subscription_to_dict(s) for s in session.scalars(select(Subscription).order_by(Subscription.id))]
    if args.json:
        _print({"subscriptions": shown})
        return 0
    for sub in shown:
        print(f"{sub['id']:>4}  {', '.join(sub['events'])} -> {sub['url']} ({sub['style']})")
    return 0


def _new_password(args: argparse.Namespace) -> str | None:
    """``--password``, or asked for twice at a prompt; None (after saying so) if the two differ."""
    import getpass

    if args.password is not None:
        return args.password
    password = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != password:
        print("buildhook: the passwords differ", file=sys.stderr)
        return None
    return password


def cmd_users_add(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.users import add_user

    password = _new_password(args)
    if password is None:
        return 2
    with services.sessions() as session:
        user = add_user(session, args.name, password, args.role)
        record(session, cli_actor(), "user.created", f"user {user.name}")
        session.commit()
        print(f"User {user.name} ({user.role}) added")
    return 0


def cmd_users_list(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.users import list_users, user_to_dict

    with services.sessions() as session:
        shown = [user_to_dict(user) for user in list_users(session)]
    if args.json:
        _print({"users": shown})
        return 0
    if not shown:
        print("No users yet: buildhook users add NAME --role admin")
    for user in shown:
        print(f"{user['name']:<20} {user['role']:<7} added {user['created_at'][:10]}")
    return 0


def cmd_users_remove(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.users import delete_user

    with services.sessions() as session:
        delete_user(session, args.name, acting=None)
        record(session, cli_actor(), "user.removed", f"user {args.name}")
        session.commit()
    print(f"User {args.name} removed, with their tokens and sessions")
    return 0


def cmd_users_set_password(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.users import set_password

    password = _new_password(args)
    if password is None:
        return 2
    with services.sessions() as session:
        set_password(session, args.name, password)
        record(session, cli_actor(), "user.password_changed", f"user {args.name}")
        session.commit()
    print(f"Password of {args.name} changed; their sessions are ended")
    return 0


def cmd_tokens_add(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.users import create_token, get_user

    with services.sessions() as session:
        row, token = create_token(session, get_user(session, args.user))
        record(session, cli_actor(), "token.created", f"token {row.id}", user=args.user)
        session.commit()
        print(f"# token {row.id} for {args.user}: shown once, keep it safe", file=sys.stderr)
        print(token)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.users import revoke_token

    with services.sessions() as session:
        revoke_token(session, args.id)
        record(session, cli_actor(), "token.revoked", f"token {args.id}")
        session.commit()
    print(f"Token {args.id} revoked")
    return 0


def cmd_tokens_list(args: argparse.Namespace, services: Container) -> int:
    from sqlalchemy import select

    from builder.db.models import ApiToken

    with services.sessions() as session:
        for row in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            print(f"{row.id:>4}  {row.user.name:<16} {row.prefix}...  {state}")
    return 0


def add_admin_commands(sub) -> None:  # type: ignore[no-untyped-def]
    users = sub.add_parser("users", help="people who sign in").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "viewer"], required=True)
    add.add_argument("--password", help="default: asked for at a prompt")
    add.set_defaults(func=cmd_users_add, writes=True)
    lst = users.add_parser("list", help="list users and their roles")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_users_list, writes=False)
    remove = users.add_parser("remove", help="remove a user and their tokens (never the last admin)")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_users_remove, writes=True)
    change = users.add_parser("set-password", help="give a user a new password (ends their sessions, "
                              "clears their failed sign-ins)")
    change.add_argument("name")
    change.add_argument("--password", help="default: asked for at a prompt")
    change.set_defaults(func=cmd_users_set_password, writes=True)

    tokens = sub.add_parser("tokens", help="API tokens for scripts").add_subparsers(
        dest="tokens_command", required=True)
    create = tokens.add_parser("add", aliases=["create"], help="add a token for a user (printed once)")
    create.add_argument("--user", required=True)
    create.set_defaults(func=cmd_tokens_add, writes=True)
    revoke = tokens.add_parser("revoke", help="revoke a token")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_tokens_revoke, writes=True)
    tokens.add_parser("list", help="list tokens (never the tokens themselves)").set_defaults(
        func=cmd_tokens_list, writes=False)

    rules = sub.add_parser("deploy-rules", help="deploy pushed images to environments").add_subparsers(
        dest="deploy_rules_command", required=True)
    add = rules.add_parser("add", help="add a deploy rule")
    add.add_argument("--repository", required=True, help="image repository, e.g. acme/widget")
    add.add_argument("--tag", required=True, help="exact tag, glob, regex or semver range like '>=1.2 <2'")
    add.add_argument("--match", choices=["exact", "glob", "regex", "semver"],
                     help="how --tag matches (default: guessed: a range, a glob, else exact)")
    add.add_argument("--environment", required=True, help="e.g. staging")
    add.add_argument("--registry", help="host[:port] of the registry whose images it deploys: BUILDHOOK_REGISTRY "
                     "(the default) or one of BUILDHOOK_TRUSTED_REGISTRIES")
    add.add_argument("--webhook-url", help="a deploy system to POST a signed webhook to")
    add.add_argument("--webhook-secret", help="signs the webhook (X-Buildhook-Signature)")
    add.add_argument("--container", help="a container to recreate from the new image")
    add.add_argument("--docker-host", help="the engine of --container (default: DOCKER_HOST / local)")
    add.add_argument("--manual", action="store_true", help="never fire on registry events: promotions and rollbacks only")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=cmd_deploy_rules_add, writes=True)
    lst = rules.add_parser("list", help="list deploy rules")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_deploy_rules_list, writes=False)

    deliveries = sub.add_parser("deliveries", help="outbound webhook deliveries").add_subparsers(
        dest="deliveries_command", required=True)
    lst = deliveries.add_parser("list", help="the newest deliveries")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_deliveries_list, writes=False)
    again = deliveries.add_parser("redeliver", help="send a delivery again")
    again.add_argument("id", type=int)
    again.set_defaults(func=cmd_deliveries_redeliver, writes=True)

    subs = sub.add_parser("subscriptions", help="build, image and deployment event webhooks").add_subparsers(
        dest="subscriptions_command", required=True)
    add = subs.add_parser("add", help="subscribe a URL to events")
    add.add_argument("--url", required=True)
    add.add_argument("--event", action="append", required=True,
                     help="build.queued, build.started, build.succeeded, build.failed, build.cancelled, "
                          "image.pushed, deployment.succeeded, deployment.failed, or * (repeatable)")
    add.add_argument("--secret", help="signs each delivery (X-Buildhook-Signature)")
    add.add_argument("--trigger", type=int, help="only builds of this trigger")
    add.add_argument("--ref", help="only refs matching this glob, e.g. main or release/*")
    add.add_argument("--style", choices=["json", "slack"], default="json")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=cmd_subscriptions_add, writes=True)
    lst = subs.add_parser("list", help="list subscriptions")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_subscriptions_list, writes=False)
