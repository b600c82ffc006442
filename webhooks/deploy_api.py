"""The JSON API for deploy rules, deployments, registry events, subscriptions and deliveries."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from builder.notify.deliveries import delivery_to_dict, redeliver
from builder.deploys.rules import create_rule, rule_to_dict, spec_from_json
from builder.deploys.deployments import deployment_to_dict
from builder.errors import InputError, NotFound
from builder.ids import is_id
from builder.db.paging import split_page
from builder.db.models import DeployRule, Deployment, OutboundDelivery, RegistryEvent, Subscription
from builder.notify.subscriptions import create_subscription, subscription_to_dict
from builder.registries.credentials import RegistryAccess
from builder.registries.retention_records import RETENTION_OUTCOMES, retention_records, retention_to_dict
from webhooks.api import int_arg, page_size
from webhooks.context import db, services

bp = Blueprint("deploy_api", __name__, url_prefix="/api")


@bp.get("/deploy-rules")
def deploy_rules_index():  # type: ignore[no-untyped-def]
    rules = db().scalars(select(DeployRule).order_by(DeployRule.id))
    return jsonify({"deploy_rules": [rule_to_dict(rule) for rule in rules]})


@bp.post("/deploy-rules")
def deploy_rules_create():  # type: ignore[no-untyped-def]
    ctx = services()
    session = db()
    rule = create_rule(session, ctx.box, spec_from_json(request.get_json(silent=True)), ctx.settings.target_policy(),
                       RegistryAccess(ctx.settings))
    session.commit()
    return jsonify(rule_to_dict(rule)), 201


@bp.get("/deployments")
def deployments_index():  # type: ignore[no-untyped-def]
    query = select(Deployment).order_by(Deployment.id.desc()).limit(page_size())
    if is_id(request.args.get("build")):
        query = query.where(Deployment.build_id == int(request.args["build"]))
    return jsonify({"deployments": [deployment_to_dict(d) for d in db().scalars(query)]})


@bp.get("/registry-events")
def registry_events_index():  # type: ignore[no-untyped-def]
    events = db().scalars(select(RegistryEvent).order_by(RegistryEvent.id.desc()).limit(page_size()))
    return jsonify({"registry_events": [
        {"id": e.id, "source": e.source, "event_id": e.event_id, "action": e.action, "registry": e.registry_host,
         "repository": e.repository, "tag": e.tag, "digest": e.digest, "outcome": e.outcome, "reason": e.reason,
         "build": e.build_id, "received_at": e.received_at.isoformat()} for e in events]})


@bp.get("/retention-deletions")
def retention_deletions_index():  # type: ignore[no-untyped-def]
    """What retention deleted or tried to (registry tags and manifests, old logs and deliveries), newest first:
    {"retention_deletions": [...], "next": cursor or null}; ``outcome`` may be given more than once (any of them)."""
    trigger = request.args.get("trigger")
    if trigger is not None and not is_id(trigger):
        raise InputError("trigger must be a trigger id")
    outcomes = request.args.getlist("outcome")
    if any(outcome not in RETENTION_OUTCOMES for outcome in outcomes):
        raise InputError(f"outcome must be one of {', '.join(RETENTION_OUTCOMES)}")
    limit = page_size()
    rows = retention_records(db(), trigger_id=int(trigger) if trigger else None, outcomes=outcomes, limit=limit + 1,
                             before=int_arg("before"))
    page, next_cursor = split_page(rows, limit)
    return jsonify({"retention_deletions": [retention_to_dict(row) for row in page], "next": next_cursor})


@bp.get("/subscriptions")
def subscriptions_index():  # type: ignore[no-untyped-def]
    return jsonify({"subscriptions": [subscription_to_dict(s) for s in
                                      db().scalars(select(Subscription).order_by(Subscription.id))]})


@bp.post("/subscriptions")
def subscriptions_create():  # type: ignore[no-untyped-def]
    ctx = services()
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise InputError("expected a JSON object with a url")
    events = data.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise InputError("events must be a list of event names")
    trigger = data.get("trigger")
    if trigger is not None and not isinstance(trigger, int):
        raise InputError("trigger must be a trigger id")
    session = db()
    subscription = create_subscription(
        session, ctx.box, url=data["url"], events=events, secret=data.get("secret") or None, trigger_id=trigger,
        ref_pattern=data.get("ref_pattern") or None, style=data.get("style") or "json",
        policy=ctx.settings.target_policy())
    session.commit()
    return jsonify(subscription_to_dict(subscription)), 201


@bp.get("/deliveries")
def deliveries_index():  # type: ignore[no-untyped-def]
    query = select(OutboundDelivery).order_by(OutboundDelivery.id.desc()).limit(page_size())
    for field, column in (("deployment", OutboundDelivery.deployment_id), ("build", OutboundDelivery.build_id)):
        if is_id(request.args.get(field)):
            query = query.where(column == int(request.args[field]))
    return jsonify({"deliveries": [delivery_to_dict(d) for d in db().scalars(query)]})


@bp.get("/deliveries/<int:delivery_id>")
def deliveries_show(delivery_id: int):  # type: ignore[no-untyped-def]
    delivery = db().get(OutboundDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    return jsonify(delivery_to_dict(delivery, with_attempts=True))


@bp.post("/deliveries/<int:delivery_id>/redeliver")
def deliveries_redeliver(delivery_id: int):  # type: ignore[no-untyped-def]
    session = db()
    delivery = redeliver(session, delivery_id)
    session.commit()
    services().send_deliveries([delivery.id])
    return jsonify(delivery_to_dict(delivery)), 202
