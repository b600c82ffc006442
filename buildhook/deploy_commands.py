"""``buildhook deployments approve|reject|promote`` and ``buildhook environments list|rollback``.

The actor recorded in the audit log (and as who approved or asked) is ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from builder.container import Container


def _show(deployments: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"deployments": deployments}, indent=2))
        return
    for d in deployments:
        print(f"Deployment {d['id']}: {d['repository']}@{d['digest']} -> {d['environment']} ({d['kind']}), {d['state']}")


def _started(services: Any, created: list[Any], queued: list[Any], as_json: bool) -> int:
    from builder.deploys.deployments import deployment_to_dict

    shown = [deployment_to_dict(d) for d in created]
    services.start_deployments([d["id"] for d in shown if d["state"] == "pending"])
    services.send_deliveries([d.id for d in queued])
    _show(shown, as_json)
    return 0


def cmd_decide(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.audit import cli_actor
    from builder.deploys.deployments import deployment_to_dict
    from builder.deploys.promotions import decide

    with services.sessions() as session:
        deployment = decide(session, args.id, args.deployments_command == "approve", cli_actor())
        session.commit()
        shown = deployment_to_dict(deployment)
    if shown["state"] == "pending":
        services.start_deployments([shown["id"]])
    _show([shown], args.json)
    return 0


def cmd_promote(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.audit import cli_actor
    from builder.deploys.promotions import promote

    with services.sessions() as session:
        created, queued = promote(session, services.settings, args.id, args.environment, cli_actor())
        session.commit()
        return _started(services, created, queued, args.json)


def cmd_rollback(args: argparse.Namespace, services: Container) -> int:
    from builder.accounts.audit import cli_actor
    from builder.deploys.promotions import rollback

    with services.sessions() as session:
        created, queued = rollback(session, services.settings, args.name,
                                   {"repository": args.repository, "to": args.to}, cli_actor())
        session.commit()
        return _started(services, created, queued, args.json)


def cmd_environments_list(args: argparse.Namespace, services: Container) -> int:
    from builder.deploys.environments import environment_names, environment_to_dict

    with services.sessions() as session:
        shown = [environment_to_dict(session, name) for name in environment_names(session)]
    if args.json:
        print(json.dumps({"environments": shown}, indent=2))
        return 0
    for env in shown:
        approval = " (requires approval)" if env["requires_approval"] else ""
        print(f"{env['name']}{approval}: {env['awaiting_approval']} awaiting approval")
        for running in env["running"]:
            print(f"    {running['repository']}@{running['digest']}  deployment {running['deployment']}")
    return 0


def add_deploy_commands(sub: Any) -> None:
    deployments = sub.add_parser("deployments", help="approve, reject or promote a deployment").add_subparsers(
        dest="deployments_command", required=True)
    for name, text in (("approve", "approve a deployment awaiting approval: it runs now"),
                       ("reject", "reject a deployment awaiting approval")):
        decide = deployments.add_parser(name, help=text)
        decide.add_argument("id", type=int)
        decide.add_argument("--json", action="store_true")
        decide.set_defaults(func=cmd_decide, writes=True)
    promote = deployments.add_parser("promote", help="deploy a deployment's digest to another environment")
    promote.add_argument("id", type=int)
    promote.add_argument("--environment", required=True, help="e.g. production")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(func=cmd_promote, writes=True)
    environments = sub.add_parser("environments", help="environments: what runs, rollback").add_subparsers(
        dest="environments_command", required=True)
    lst = environments.add_parser("list", help="each environment and what runs there")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_environments_list, writes=False)
    back = environments.add_parser("rollback", help="deploy the digest that ran before (or --to's)")
    back.add_argument("name")
    back.add_argument("--repository", required=True)
    back.add_argument("--to", type=int, help="the deployment whose digest to deploy")
    back.add_argument("--json", action="store_true")
    back.set_defaults(func=cmd_rollback, writes=True)
