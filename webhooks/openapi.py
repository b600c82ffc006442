"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /api/openapi.json``.

It sits under /api/ and so needs sign-in like the rest of the API (``webhooks.auth``).
Besides every /api/ endpoint it documents the inbound endpoints (``/hooks/{provider}``,
``/registry/events``, ``/registry/hooks/{source}``) and ``/healthz``. The component
schemas live in ``webhooks.openapi_schemas``; ``tests/webhooks/test_openapi.py``
checks real answers against both, and that every /api/ route is documented here.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from flask import Blueprint, jsonify

from webhooks.context import services
from builder.forges.registry import FORGES
from builder.registries.retention_records import RETENTION_OUTCOMES
from webhooks.openapi_schemas import PROVIDER, PROVIDER_SCHEMAS, SCHEMAS, Schema, obj, ref

bp = Blueprint("openapi", __name__, url_prefix="/api")

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is malformed: a bad JSON body, field or query parameter."),
    401: ("Unauthorized", ("Not signed in: send Authorization: Bearer TOKEN (hooks: a missing or wrong signature; "
                           "registry: a missing or wrong registry token).")),
    403: ("Forbidden", "Signed in, but changes (and users, and others' tokens) need the admin role "
                       "(or, with a session, the X-CSRF-Token header)."),
    404: ("NotFound", "No such object (or, for runs, no such branch or tag)."),
    409: ("Conflict", "The object is not in a state that allows this."),
    413: ("PayloadTooLarge", "The body is larger than BUILDHOOK_MAX_BODY_BYTES."),
    415: ("UnsupportedMediaType", "Not a notification content type."),
    422: ("Unprocessable", "Valid, but nothing to do: no rule of the trigger matches the ref."),
    502: ("BadGateway", "The Git host refused the trigger's clone credentials."),
    503: ("Unavailable", "Temporarily unavailable (the database, or the Git remote): retry later."),
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def answer(description: str, schema: Schema | None = None, others: dict[str, Schema] | None = None) -> dict[str, Any]:
    """A response; ``schema`` is the JSON body, ``others`` bodies of other media types."""
    media = {kind: {"schema": value} for kind, value in (others or {}).items()}
    return {"description": description, "content": {**(_json(schema) if schema else {}), **media}}


def listing(key: str, item: str) -> Schema:
    return obj({key: {"type": "array", "items": ref(item)}})


def query(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "integer", "minimum": 0}}


NO_CONTENT: dict[str, Any] = {"description": "Done; no body."}


def path_id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id",
            "schema": {"type": "integer", "minimum": 0}}


PARAMETERS = {
    "TriggerId": path_id("trigger_id", "trigger"),
    "BuildId": path_id("build_id", "build"),
    "DeliveryId": path_id("delivery_id", "delivery"),
    "Limit": query("limit", "at most this many, newest first (1 to 500, more is 500; default 50)",
                   {"type": "integer", "minimum": 1}),
    "Before": query("before", "only older ones: those with a smaller id (the next cursor)"),
    "TokenId": path_id("token_id", "token"),
    "UserName": {"name": "name", "in": "path", "required": True, "description": "the user's name",
                 "schema": {"type": "string"}},
}
TIME_QUERY = {"type": "string", "description": "ISO 8601 (UTC unless an offset is given), or a date: its whole day",
              "examples": ["2026-01-31T12:00:00Z", "2026-01-31"]}
STATE_QUERY = {"name": "state", "in": "query", "required": False, "style": "form", "explode": True,
               "description": "only builds in one of these states (repeat it, or separate with commas)",
               "schema": {"type": "array", "items": {"type": "string"}}}


def param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def operation(method: str, op_id: str, tag: str, summary: str, responses: dict[int, Any], *,
              errors: tuple[int, ...] = (), params: list[Any] | None = None, body: Schema | None = None,
              body_content: dict[str, Any] | None = None, security: list[Any] | None = None,
              description: str | None = None) -> tuple[str, dict[str, Any]]:
    """One operation. /api/ ones (``security`` None) can answer 401, 503 (database down) and, for changes, 403."""
    codes = set(errors)
    if security is None:
        codes |= {401, 503} | ({403} if method != "get" else set())
    shown: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary}
    if description:
        shown["description"] = description
    if params:
        shown["parameters"] = params
    if body is not None or body_content is not None:
        shown["requestBody"] = {"required": True, "content": body_content or _json(body or {})}
    shown["responses"] = {str(code): value for code, value in sorted(responses.items())}
    shown["responses"].update({str(code): {"$ref": f"#/components/responses/{ERRORS[code][0]}"}
                               for code in sorted(codes)})
    if security is not None:
        shown["security"] = security
    return method, shown


def path(*operations: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(operations)


BUILDS = obj({"builds": {"type": "array", "items": ref("Build")}})
OPEN: list[Any] = []  # no sign-in: the endpoint checks its own signature or token
REGISTRY_AUTH = [{"registryToken": []}, {"registryQueryToken": []}]
EVENT_TYPES = ("application/vnd.docker.distribution.events.v1+json",
               "application/vnd.docker.distribution.events.v2+json", "application/json")
HOOK_PROVIDER = {"name": "provider", "in": "path", "required": True, "schema": PROVIDER}
REGISTRY_SOURCE = {"name": "source", "in": "path", "required": True,
                   "schema": {"type": "string", "enum": ["dockerhub", "quay", "harbor", "acr"]}}

PATHS: dict[str, Any] = {
    "/api/openapi.json": path(operation(
        "get", "getOpenapi", "meta", "This document",
        {200: answer("The OpenAPI 3.1 document.", {"type": "object", "required": ["openapi", "info", "paths"]})})),
    "/api/triggers": path(
        operation("get", "listTriggers", "triggers", "All triggers, oldest first",
                  {200: answer("The triggers.", listing("triggers", "Trigger"))}),
        operation("post", "createTrigger", "triggers", "Add a trigger", {201: answer("Created.", ref("Trigger"))},
                  errors=(400,), body=ref("TriggerInput"),
                  description="The secret, tokens and keys are accepted, stored encrypted and never returned.")),
    "/api/triggers/{trigger_id}": path(
        operation("get", "getTrigger", "triggers", "One trigger", {200: answer("The trigger.", ref("Trigger"))},
                  errors=(404,), params=[param("TriggerId")]),
        operation("patch", "editTrigger", "triggers", "Change a trigger, disable or enable it",
                  {200: answer("The trigger as it is now.", ref("Trigger"))}, errors=(400, 404),
                  params=[param("TriggerId")], body=ref("TriggerPatch"),
                  description="Only the fields given change, with the checks of createTrigger. Secrets are "
                              "accepted, never returned. A disabled trigger's webhooks are recorded and answered "
                              "202 ignored, with the reason \"trigger is disabled\"."),
        operation("delete", "deleteTrigger", "triggers", "Delete a trigger", {204: NO_CONTENT},
                  errors=(404, 409), params=[param("TriggerId")],
                  description="Its builds and deliveries stay (with trigger null). 409: one of its builds is "
                              "still queued or running.")),
    "/api/triggers/{trigger_id}/deliveries": path(operation(
        "get", "listTriggerDeliveries", "triggers", "A trigger's recent inbound webhooks, newest first",
        {200: answer("A page of deliveries (and those for its repository no trigger took); pass next as before=.",
                     obj({"deliveries": {"type": "array", "items": ref("InboundDelivery")},
                          "next": {"type": ["integer", "null"], "description": "null on the last page"}}))},
        errors=(400, 404), params=[param("TriggerId"), param("Limit"), param("Before")])),
    "/api/triggers/{trigger_id}/runs": path(operation(
        "post", "runTrigger", "triggers", "Run a trigger now on a branch, a tag or a commit",
        {201: answer("The builds queued, as a push of that ref would queue them.", BUILDS)},
        errors=(400, 404, 409, 422, 502, 503), params=[param("TriggerId")], body=ref("RunInput"),
        description="404: unknown trigger, branch or tag; 409: the trigger is disabled; 422: no rule matches; "
                    "502: the Git host refused the credentials; 503: the Git remote is unreachable.")),
    "/api/builds": path(operation(
        "get", "listBuilds", "builds", "Builds, newest first",
        {200: answer("A page of builds; pass next as before= for the next one.",
                     obj({"builds": BUILDS["properties"]["builds"],
                          "next": {"type": ["integer", "null"], "description": "null on the last page"}}))},
        errors=(400,), params=[query("limit", "page size (default 50, at most 500)",
                                                      {"type": "integer", "minimum": 1}),
                               query("before", "only builds with a smaller id (the next cursor)"),
                               query("trigger", "only this trigger's builds"),
                               query("repository", "only this repository's builds (as the host names it)",
                                     {"type": "string"}),
                               query("ref", "only builds of this branch or tag name", {"type": "string"}),
                               query("pull_request", "only builds of this pull or merge request number"),
                               STATE_QUERY,
                               query("since", "only builds created at or after this time", TIME_QUERY),
                               query("until", "only builds created at or before this time", TIME_QUERY)])),
    "/api/overview": path(operation(
        "get", "getOverview", "builds", "Builds per day, success rate, median build time and queue wait",
        {200: answer("The overview page's numbers over the last days (today included, UTC).", ref("Overview"))},
        errors=(400,), params=[query("days", "the window in days (1 to 90; default 14)",
                                     {"type": "integer", "minimum": 1, "maximum": 90})])),
    "/api/builds/{build_id}": path(operation(
        "get", "getBuild", "builds", "One build", {200: answer("The build.", ref("Build"))},
        errors=(404,), params=[param("BuildId")])),
    "/api/builds/{build_id}/log": path(operation(
        "get", "getBuildLog", "builds", "A build's log",
        {200: answer("The lines after after=, as JSON (10,000 at most; next_after to go on), or all of them "
                     "as plain text with format=text.", ref("LogLines"),
                     {"text/plain": {"type": "string"}})},
        errors=(400, 404), params=[param("BuildId"), query("after", "only lines with a greater seq"),
                                   query("format", "text: plain text, one line per line",
                                         {"type": "string", "enum": ["json", "text"]}),
                                   query("download", "1 (with format=text): as an attachment build-ID.log",
                                         {"type": "string", "enum": ["1"]})])),
    "/api/builds/{build_id}/log/stream": path(operation(
        "get", "streamBuildLog", "builds", "Follow a build's log live",
        {200: answer("Server-sent events: each log line (id: its seq), event: state when the state changes, "
                     "event: end once the build is finished and every line was sent.",
                     others={"text/event-stream": {"type": "string"}})},
        errors=(400, 404), params=[
            param("BuildId"), query("after", "start after this line (seq)"),
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "what EventSource sends when it reconnects: resume after that line"},
            query("lifetime", "close the connection after this many seconds (at most 600)",
                  {"type": "number", "minimum": 0})])),
    "/api/builds/{build_id}/cancel": path(operation(
        "post", "cancelBuild", "builds", "Cancel a build",
        {202: answer("The build: cancelled if it was still queued, else running with cancel_requested.",
                     ref("Build"))},
        errors=(404, 409), params=[param("BuildId")], description="409: the build has already finished.")),
    "/api/builds/{build_id}/rebuild": path(operation(
        "post", "rebuildBuild", "builds", "Build the same commit again",
        {201: answer("A new queued build of the same commit, image and tags.", obj({"build": ref("Build")}))},
        errors=(404, 409), params=[param("BuildId")],
        description="409: the build's trigger was deleted or is disabled.")),
    "/api/deploy-rules": path(
        operation("get", "listDeployRules", "deployments", "All deploy rules",
                  {200: answer("The deploy rules.", listing("deploy_rules", "DeployRule"))}),
        operation("post", "createDeployRule", "deployments", "Add a deploy rule",
                  {201: answer("Created.", ref("DeployRule"))}, errors=(400,), body=ref("DeployRuleInput"))),
    "/api/deployments": path(operation(
        "get", "listDeployments", "deployments", "Deployments, newest first",
        {200: answer("The deployments.", listing("deployments", "Deployment"))},
        errors=(400,), params=[param("Limit"), query("build", "only those of this build's image")])),
    "/api/registry-events": path(operation(
        "get", "listRegistryEvents", "deployments", "Registry notifications received, newest first",
        {200: answer("The events, with their outcome.", listing("registry_events", "RegistryEvent"))},
        errors=(400,), params=[param("Limit")])),
    "/api/retention-deletions": path(operation(
        "get", "listRetentionDeletions", "deployments", "What retention deleted (or tried to), newest first",
        {200: answer("A page of records; pass next as before= for the next one.",
                     obj({"retention_deletions": {"type": "array", "items": ref("RetentionDeletion")},
                          "next": {"type": ["integer", "null"], "description": "null on the last page"}}))},
        errors=(400,), params=[param("Limit"), param("Before"), query("trigger", "only this trigger's"),
                               query("outcome", "only those with this outcome: deleted, refused, missing or kept "
                                                "(given more than once: any of them)",
                                     {"type": "string", "enum": list(RETENTION_OUTCOMES)})])),
    "/api/deliveries": path(operation(
        "get", "listDeliveries", "deliveries", "Outbound webhook deliveries, newest first",
        {200: answer("The deliveries.", listing("deliveries", "Delivery"))},
        errors=(400,), params=[param("Limit"), query("build", "only this build's"),
                               query("deployment", "only this deployment's")])),
    "/api/deliveries/{delivery_id}": path(operation(
        "get", "getDelivery", "deliveries", "One delivery, with every attempt",
        {200: answer("The delivery and its attempts_log.",
                     {"allOf": [ref("Delivery"), {"required": ["attempts_log"]}]})},
        errors=(404,), params=[param("DeliveryId")])),
    "/api/deliveries/{delivery_id}/redeliver": path(operation(
        "post", "redeliver", "deliveries", "Send a delivery again (same body and delivery id)",
        {202: answer("Queued again.", ref("Delivery"))}, errors=(404, 409), params=[param("DeliveryId")],
        description="409: the delivery has not been sent yet.")),
    "/api/subscriptions": path(
        operation("get", "listSubscriptions", "subscriptions", "All event subscriptions",
                  {200: answer("The subscriptions.", listing("subscriptions", "Subscription"))}),
        operation("post", "createSubscription", "subscriptions", "Subscribe a URL to events",
                  {201: answer("Created.", ref("Subscription"))}, errors=(400,), body=ref("SubscriptionInput"))),
    "/api/users": path(
        operation("get", "listUsers", "accounts", "Every user (admins only)",
                  {200: answer("The users, by name.", listing("users", "User"))}, errors=(403,)),
        operation("post", "createUser", "accounts", "Add a user", {201: answer("Created.", ref("User"))},
                  errors=(400, 409), body=ref("UserInput"), description="409: the name is taken.")),
    "/api/users/{name}": path(
        operation("patch", "setUserPassword", "accounts", "Give a user a new password",
                  {200: answer("The user.", ref("User"))}, errors=(400, 404), params=[param("UserName")],
                  body=ref("PasswordInput"), description="Every session of theirs ends; their API tokens stay. "
                  "400: a password the policy refuses."),
        operation("delete", "deleteUser", "accounts", "Delete a user and their tokens", {204: NO_CONTENT},
                  errors=(404, 409), params=[param("UserName")],
                  description="Their sessions end at once. 409: yourself, or the last admin.")),
    "/api/tokens": path(
        operation("get", "listTokens", "accounts", "API tokens: an admin's lists all, a viewer's their own",
                  {200: answer("The tokens, oldest first; never a token itself.", listing("tokens", "Token"))}),
        operation("post", "createToken", "accounts", "Create an API token", {
            201: answer("The token, in this answer only.", ref("NewToken"))},
            errors=(400, 404), body=ref("TokenInput"), description="404: no such user.")),
    "/api/tokens/{token_id}": path(operation(
        "delete", "revokeToken", "accounts", "Revoke a token", {204: NO_CONTENT}, errors=(404,),
        params=[param("TokenId")], description="It stays listed, with revoked_at; requests with it get 401.")),
    "/hooks/{provider}": path(operation(
        "post", "receiveHook", "hooks", "A Git host's webhook",
        {200: answer("A ping.", ref("HookResult")),
         202: answer("Recorded: accepted (builds queued), ignored, no_trigger or duplicate.", ref("HookResult"))},
        errors=(400, 401, 404, 413, 503), params=[HOOK_PROVIDER], body={"type": "object"}, security=OPEN,
        description="Signed by the host: {signatures}, with the trigger's secret. "
                    "Every delivery is recorded; errors carry its id.")),
    "/registry/events": path(operation(
        "post", "receiveRegistryEvents", "registry", "A CNCF distribution registry's notifications",
        {202: answer("Recorded; deployments queued.", ref("RegistryResult"))},
        errors=(400, 401, 413, 415, 503), security=REGISTRY_AUTH,
        body_content={kind: {"schema": ref("RegistryEnvelope")} for kind in EVENT_TYPES})),
    "/registry/hooks/{source}": path(operation(
        "post", "receiveRegistryHook", "registry", "Docker Hub, Quay, Harbor or ACR webhooks",
        {202: answer("Recorded; deployments queued.", ref("RegistryResult"))},
        errors=(400, 401, 404, 413, 503), params=[REGISTRY_SOURCE], body={"type": "object"},
        security=REGISTRY_AUTH)),
    "/badge/{trigger}.svg": path(operation(
        "get", "getBadge", "meta", "A trigger's build status badge (SVG) for a README",
        {200: answer("passing, failing, running or unknown: the branch's latest build that ran or runs.",
                     others={"image/svg+xml": {"type": "string"}})},
        errors=(404,), security=[{}, {"bearerAuth": []}],  # either
        params=[{"name": "trigger", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}},
                {"name": "branch", "in": "query", "schema": {"type": "string"},
                 "description": "default: the trigger's default branch"}],
        description="Open to anyone when the trigger's public_badge is true; otherwise it needs a sign-in "
                    "or a token, and answers 404 (as for no such trigger) so a private trigger is not disclosed.")),
    "/healthz": path(operation(
        "get", "health", "meta", "Liveness",
        {200: answer("Alive.", obj({"status": {"type": "string", "const": "ok"}}))}, security=OPEN)),
}


def _version() -> str:
    try:
        return metadata.version("buildhook")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def document(public_url: str | None = None) -> dict[str, Any]:
    """The whole OpenAPI document; ``servers`` names ``public_url`` when given."""
    shown: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "buildhook", "version": _version(),
                 "description": "Self-hosted build triggers: Git host webhooks, builds, deploy rules, "
                                "deployments and outbound webhooks. Errors are {\"error\", \"status\"}."},
    }
    if public_url:
        shown["servers"] = [{"url": public_url.rstrip("/")}]
    shown["security"] = [{"bearerAuth": []}]
    shown["tags"] = [{"name": name} for name in ("triggers", "builds", "deployments", "deliveries",
                                                  "subscriptions", "accounts", "hooks", "registry", "meta")]
    from webhooks.openapi_deploys import DEPLOY_SCHEMAS
    from webhooks.openapi_environments import ENVIRONMENT_PATHS, ENVIRONMENT_SCHEMAS

    shown["paths"] = copy.deepcopy({**PATHS, **ENVIRONMENT_PATHS})
    shown["components"] = {
        "schemas": copy.deepcopy({**SCHEMAS, **DEPLOY_SCHEMAS, **ENVIRONMENT_SCHEMAS}),
        "responses": {name: answer(text, ref("Error")) for name, text in ERRORS.values()},
        "parameters": PARAMETERS,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "An API token (buildhook tokens create). A signed-in browser session "
                                          "works too; its changes also need the X-CSRF-Token header."},
            "registryToken": {"type": "http", "scheme": "bearer",
                              "description": "BUILDHOOK_REGISTRY_EVENTS_TOKEN"},
            "registryQueryToken": {"type": "apiKey", "in": "query", "name": "token",
                                   "description": "BUILDHOOK_REGISTRY_EVENTS_TOKEN, for registries that send "
                                                  "no headers (Docker Hub, Quay)"},
        },
    }
    _fill_forges(shown)
    return shown


def _fill_forges(shown: dict[str, Any]) -> None:
    """The registered forges, as they are now: provider enums and the hook signatures."""
    names = list(FORGES)
    for schema in PROVIDER_SCHEMAS:
        shown["components"]["schemas"][schema]["properties"]["provider"]["enum"] = names
    hook = shown["paths"]["/hooks/{provider}"]["post"]
    hook["parameters"][0]["schema"]["enum"] = names
    signatures = ", ".join(forge.signature_header for forge in FORGES.values() if forge.signature_header)
    hook["description"] = hook["description"].format(signatures=signatures)


@bp.get("/openapi.json")
def openapi_json():  # type: ignore[no-untyped-def]
    return jsonify(document(services().settings.public_url))
