"""The OpenAPI paths and schemas of environments, promotion, approval, rollback and the audit log.

Kept beside ``webhooks.openapi`` (which merges them into the document) so that module stays small.
"""

from __future__ import annotations

from typing import Any

from webhooks.openapi import answer, listing, operation, path, query
from webhooks.openapi_schemas import ID, LINK, MAYBE_STRING, STRING, TIME, Schema, nullable, obj, ref

ENVIRONMENT_SCHEMAS: dict[str, Schema] = {
    "Running": obj({
        "repository": STRING, "registry": MAYBE_STRING, "tag": STRING,
        "digest": nullable("string", "the digest that runs there now"),
        "deployment": {**ID, "description": "the newest succeeded deployment of the repository here"},
        "build": LINK, "commit": MAYBE_STRING,
        "cause": {"type": "string", "enum": ["event", "promotion", "rollback"]},
        "deployed_at": TIME,
        "deployed_by": nullable("string", "who promoted or rolled back; \"registry event\" for a pushed tag"),
        "approved_by": nullable("string", "who approved it, in an environment that requires approval"),
    }, description="What runs in an environment, for one repository."),
    "Environment": obj({
        "name": STRING,
        "requires_approval": {"type": "boolean", "description": "new deployments wait in awaiting_approval"},
        "awaiting_approval": {"type": "integer", "minimum": 0},
        "running": {"type": "array", "items": ref("Running")},
    }, description="An environment: it exists once a deploy rule names it."),
    "AuditEntry": obj({
        "id": ID, "at": TIME,
        "actor": {"type": "string", "description": "a user's name, or cli:<os user> for the buildhook command"},
        "action": {"type": "string", "description": "e.g. deployment.approved, deployment.rejected, "
                                                    "deployment.promoted, environment.rolled_back, "
                                                    "environment.updated, trigger.created, trigger.updated, "
                                                    "trigger.deleted, deploy_rule.created, user.created, "
                                                    "user.password_changed, user.removed, token.created, "
                                                    "token.revoked"},
        "subject": MAYBE_STRING,
        "details": {"type": "object"},
    }),
}
NAME = {"name": "name", "in": "path", "required": True, "description": "the environment's name",
        "schema": {"type": "string"}}
DEPLOYMENT_ID = {"name": "deployment_id", "in": "path", "required": True, "description": "the deployment's id",
                 "schema": {"type": "integer", "minimum": 0}}
CREATED = answer("The new deployments (awaiting_approval where the environment requires approval, else pending).",
                 listing("deployments", "Deployment"))


def _decision(verb: str, op_id: str, text: str) -> tuple[str, dict[str, Any]]:
    return operation("post", op_id, "deployments", f"{verb} a deployment awaiting approval",
                     {200: answer(text, ref("Deployment"))}, errors=(404, 409), params=[DEPLOYMENT_ID],
                     description="Admins only; who and when are recorded (decided_by, decided_at) and in the audit "
                                 "log. 409: the deployment is not awaiting approval.")


ENVIRONMENT_PATHS: dict[str, Any] = {
    "/api/environments": path(operation(
        "get", "listEnvironments", "deployments", "Environments and what runs in each",
        {200: answer("The environments.", listing("environments", "Environment"))})),
    "/api/environments/{name}": path(operation(
        "put", "updateEnvironment", "deployments", "Whether an environment requires approval",
        {200: answer("The environment.", ref("Environment"))}, errors=(400, 404), params=[NAME],
        body=obj({"requires_approval": {"type": "boolean"}}, additionalProperties=False),
        description="404: no deploy rule names the environment.")),
    "/api/environments/{name}/rollback": path(operation(
        "post", "rollbackEnvironment", "deployments", "Deploy the digest that ran before (or a named deployment's)",
        {202: CREATED}, errors=(400, 404, 409), params=[NAME],
        body=obj({"repository": STRING, "to": {**ID, "description": "the deployment whose digest to deploy; "
                                                                    "omitted: the one before what runs now"}},
                 ["repository"], additionalProperties=False),
        description="Through the targets of the environment's deploy rules for the repository, and its approval. "
                    "409: nothing to roll back to, or no rule of the environment deploys the repository.")),
    "/api/deployments/{deployment_id}/promote": path(operation(
        "post", "promoteDeployment", "deployments", "Deploy exactly this deployment's digest to another environment",
        {202: CREATED}, errors=(400, 404, 409), params=[DEPLOYMENT_ID],
        body=obj({"environment": {"type": "string", "minLength": 1}}, additionalProperties=False),
        description="Never a rebuild: the deployment's digest goes to the targets of the destination "
                    "environment's deploy rules for its repository (auto: false rules included). 409: the "
                    "deployment has not succeeded, or no rule of that environment deploys the repository.")),
    "/api/deployments/{deployment_id}/approve": path(_decision("Approve", "approveDeployment",
                                                               "Approved: the deployment is pending and runs now.")),
    "/api/deployments/{deployment_id}/reject": path(_decision("Reject", "rejectDeployment",
                                                              "Rejected: the deployment ends rejected.")),
    "/api/audit": path(operation(
        "get", "listAudit", "meta", "The audit log, newest first (admins only)",
        {200: answer("The entries.", listing("audit", "AuditEntry"))}, errors=(400, 403),
        params=[query("limit", "at most this many (1 to 500; default 100)", {"type": "integer", "minimum": 1}),
                query("before", "only older ones: those with a smaller id"),
                query("action", "only this action", {"type": "string"})])),
}
