"""Component schemas of the OpenAPI document (``webhooks.openapi``): what the API answers and accepts.

Each response schema mirrors one ``*_to_dict`` function (named in its description);
``tests/webhooks/test_openapi.py`` validates real answers against them, with every
object closed, so a field added there and not here fails the test.
"""

from __future__ import annotations

from typing import Any

from webhooks import openapi_team

Schema = dict[str, Any]

PUBLIC_BADGE = {"type": "boolean", "default": False,
                "description": "true: /badge/{trigger}.svg answers anyone, for a public README"}
BUILD_STATES = ["queued", "cloning", "building", "pushing", "succeeded", "failed", "skipped", "superseded",
                "cancelled"]
EVENTS = ["build.queued", "build.started", "build.succeeded", "build.failed", "build.cancelled", "image.pushed",
          "deployment.succeeded", "deployment.failed", "*"]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, description: str | None = None, **extra: Any) -> Schema:
    """A value that may be JSON null: ``type: [kind, "null"]``."""
    schema: Schema = {"type": [kind, "null"], **extra}
    return {**schema, "description": description} if description else schema


def obj(properties: dict[str, Schema], required: list[str] | None = None, description: str | None = None,
        **extra: Any) -> Schema:
    """An object; every property is required unless ``required`` says otherwise."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": list(properties) if required is None else required, **extra}
    return {"description": description, **schema} if description else schema


ID: Schema = {"type": "integer", "minimum": 1}
LINK = nullable("integer", minimum=1)  # an id of a row that may be gone (ON DELETE SET NULL)
STRING: Schema = {"type": "string"}
REDACTED_URL = ("redacted, to everyone: user, password, query values and secret paths are ****, "
                "e.g. https://hooks.slack.com/services/****")
STRINGS: Schema = {"type": "array", "items": STRING}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
MAYBE_TIME = nullable("string", "ISO 8601, UTC; null until it happens", format="date-time")
MAYBE_STRING = nullable("string")
COUNT: Schema = {"type": "integer", "minimum": 0}
IDS: Schema = {"type": "array", "items": ID}
PASSWORD: Schema = {"type": "string", "minLength": 10, "maxLength": 1024, "writeOnly": True,
                    "description": "refused (400) when it is one of 30,000 common passwords or easy to guess"}

RULE_FIELDS: dict[str, Schema] = {
    "source": {"type": "string", "enum": ["branch", "tag", "pull_request"],
               "description": "pull_request: pull and merge requests whose base (target) branch pattern matches"},
    "match": {"type": "string", "enum": ["exact", "glob", "regex"], "default": "glob",
              "description": "regex patterns are fully matched; capture groups are {\\1}... in tags"},
    "pattern": {"type": "string", "minLength": 1, "default": "*"},
    "dockerfile": {"type": "string", "default": "Dockerfile", "description": "relative to the repository"},
    "context": {"type": "string", "default": "."},
    "build_args": {"type": "object", "additionalProperties": STRING},
    "target": nullable("string", "the Dockerfile target stage"),
    "tags": {**STRINGS, "description": "tag templates: {branch} {tag} {sha} {short_sha} {ref_name} {timestamp} "
                                      "{version} {major} {minor} {patch} {\\1}... and latest; pull_request rules: "
                                      "{pr} {sha} {short_sha} {timestamp} (default pr-{pr}; with push, {pr} in each)"},
    "included_files": {**STRINGS, "description": "path globs; ** crosses directories"},
    "ignored_files": STRINGS,
    "test": {"description": "run in the image, pushed by digest only, before any tag moves (network none, the "
                            "build's limits); a non-zero exit fails the build and no tag is pushed",
             "oneOf": [{"type": "object", "additionalProperties": False, "required": ["command"], "properties": {
                 "command": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                             "description": "exec form, e.g. [\"sh\", \"-c\", \"make test\"]"},
                 "timeout": {"type": "integer", "minimum": 1, "maximum": 86400, "default": 600,
                             "description": "seconds; past it the test is killed and the build fails"}}},
                       {"type": "null"}]},
    "push": {"type": "boolean", "description": "push the image; default true, false for pull_request rules "
                                               "(the build proves the Dockerfile builds)"},
    "forks": {"type": "string", "enum": ["untrusted", "trusted"], "default": "untrusted",
              "description": "pull_request rules: requests from forks get no secret build args and no push "
                             "unless trusted"},
    "cancel_running": {"type": "boolean", "default": False,
                       "description": "a newer commit of the same branch or request cancels the rule's running build"},
    "platforms": {"type": "array", "maxItems": 8, "uniqueItems": True,
                  "items": {"type": "string", "pattern": "^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$"},
                  "description": "os/arch[/variant] to build for (BuildKit), e.g. [\"linux/amd64\", \"linux/arm64\"]: "
                                 "one image per platform and one OCI image index per tag; empty: the engine's own"},
}
BUILD_ARG_NAME: Schema = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"}
SECRET_BUILD_ARGS_SHOWN: Schema = {
    "type": "array", "items": BUILD_ARG_NAME,
    "description": "the names of the rule's secret build args; their values are never returned"}
SECRET_BUILD_ARGS_INPUT: Schema = {
    "description": "secret build args: given to the build like build_args, stored encrypted, masked as **** in "
                   "build logs, never returned (only their names). An object sets them (and replaces the rule's); "
                   "a list of names already set keeps their values (what GET shows); null: none. Omitted: none "
                   "on create, on PATCH the rule at that position keeps its own. A name may not also be a "
                   "build_args name. Note: a value used by a RUN step can be read from the image's history.",
    "writeOnly": True,
    "oneOf": [
        {"type": "object", "propertyNames": BUILD_ARG_NAME,
         "additionalProperties": {"type": "string", "minLength": 1, "pattern": "^[^\\x00\\r\\n]+$"}},
        {"type": "array", "items": BUILD_ARG_NAME},
        {"type": "null"},
    ],
}
BUILD_TIMEOUT = nullable("integer", "seconds a build may run; null: BUILDHOOK_BUILD_TIMEOUT", minimum=1,
                         maximum=7 * 24 * 3600)
STATE_COUNTS: Schema = {"type": "object", "propertyNames": {"enum": BUILD_STATES}, "additionalProperties": COUNT}
TOKEN_FIELDS: dict[str, Schema] = {
    "id": ID,
    "user": {"type": "string", "description": "the owner's name"},
    "prefix": {"type": "string", "description": "the token's first characters, to recognise it"},
    "created_at": TIME,
    "last_used_at": nullable("string", "ISO 8601, UTC; updated at most once a minute", format="date-time"),
    "revoked_at": MAYBE_TIME,
    "active": {"type": "boolean", "description": "not revoked"},
}
SECRET_FIELDS = ("status_token", "clone_token", "ssh_key")
TARGET_FIELDS = ("url", "secret", "container", "docker_host")
TRIGGER_STRINGS = ("dockerfile", "context", "default_branch", "api_url", "status_token", "clone_username",
                   "clone_token", "ssh_key", "ssh_known_hosts")

# The registered forges' names, filled in when the document is built (webhooks/openapi.py).
PROVIDER: Schema = {"type": "string", "enum": []}
PROVIDER_SCHEMAS = ("Trigger", "TriggerInput", "TriggerPatch")

SCHEMAS: dict[str, Schema] = {
    "Error": obj({
        "error": {"type": "string", "description": "what went wrong, in one line"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "the HTTP status again"},
        "delivery": {**ID, "description": "hooks only: the recorded delivery of a rejected webhook"},
    }, ["error", "status"], "Every error answer of /api/, /hooks/ and /registry/."),
    "Rule": obj({**RULE_FIELDS, "secret_build_args": SECRET_BUILD_ARGS_SHOWN, **openapi_team.RULE_FIELDS},
                description="A build rule of a trigger (rule_to_dict)."),
    "RuleInput": obj({**RULE_FIELDS, "secret_build_args": SECRET_BUILD_ARGS_INPUT, **openapi_team.RULE_FIELDS},
                     ["source"],
                     "A build rule to create; omitted fields take the defaults.", additionalProperties=False),
    "Trigger": obj({
        "id": ID,
        "provider": PROVIDER,
        "repository": {"type": "string", "description": "as the Git host names it, e.g. OWNER/NAME"},
        "clone_url": {"type": "string", "description": "without a user or password, even when it was given with "
                                                       "them (https://user:TOKEN@host/x.git is https://host/x.git)"},
        "image": STRING,
        "default_branch": STRING,
        "enabled": BOOL,
        "supersede": BOOL,
        "rules": {"type": "array", "items": ref("Rule"), "minItems": 1},
        "api_url": nullable("string", "the Git host's API for commit statuses; null: the provider's default"),
        "commit_status": {"type": "boolean", "description": "whether a status token is set"},
        "clone_auth": {"type": ["string", "null"], "enum": ["ssh-key", "token", None],
                       "description": "which kind of clone credential is set, never the credential"},
        "build_timeout": BUILD_TIMEOUT,
        "public_badge": {"type": "boolean", "description": "whether /badge/{trigger}.svg answers without sign-in"},
        **openapi_team.TRIGGER_SHOWN,
        "webhook_url": {"type": "string", "format": "uri", "description": "the URL to paste into the Git host"},
        "created_at": TIME,
    }, description="A build trigger (trigger_to_dict). Secrets, tokens and keys are never returned."),
    "TriggerInput": obj({
        "provider": PROVIDER,
        "repository": {"type": "string", "minLength": 1},
        "clone_url": {"type": "string", "minLength": 1},
        "secret": {"type": "string", "minLength": 1, "writeOnly": True},
        "image": {"type": "string", "minLength": 1},
        **{name: nullable("string") for name in TRIGGER_STRINGS},
        "rules": {"type": "array", "items": ref("RuleInput"),
                  "description": "omitted or empty: Docker Hub's defaults (every branch and every tag)"},
        "supersede": {"type": "boolean", "default": True},
        "build_timeout": BUILD_TIMEOUT,
        "public_badge": PUBLIC_BADGE,
        **openapi_team.TRIGGER_INPUT,
    }, ["provider", "repository", "clone_url", "secret", "image"], additionalProperties=False),
    "TriggerPatch": obj({
        "provider": PROVIDER,
        **{name: {"type": "string", "minLength": 1} for name in ("repository", "clone_url", "image", "default_branch")},
        "secret": {"type": "string", "minLength": 1, "writeOnly": True, "description": "a new webhook secret"},
        **{name: nullable("string", "null or empty: removed" if name in SECRET_FIELDS else None,
                          **({"writeOnly": True} if name in SECRET_FIELDS else {}))
           for name in TRIGGER_STRINGS if name not in ("dockerfile", "context", "default_branch")},
        "dockerfile": {"type": "string", "description": "with rules: [] only: the default rules' Dockerfile"},
        "context": {"type": "string", "description": "with rules: [] only"},
        "rules": {"type": "array", "items": ref("RuleInput"),
                  "description": "replaces every rule, in place by position (a rule without secret_build_args "
                                 "keeps those of the rule it replaces); empty: Docker Hub's defaults"},
        "supersede": BOOL,
        "enabled": {"type": "boolean", "description": "false: deliveries are recorded (202, ignored, "
                                                      "\"trigger is disabled\"), nothing is built"},
        "build_timeout": BUILD_TIMEOUT,
        "public_badge": PUBLIC_BADGE,
        **openapi_team.TRIGGER_INPUT,
    }, [], "The fields to change, checked as on create; the others stay.", additionalProperties=False),
    "InboundDelivery": obj({
        "id": ID,
        "received_at": TIME,
        "provider": STRING,
        "event": nullable("string", "the host's event name, e.g. push, ping"),
        "delivery": nullable("string", "the host's delivery id (X-GitHub-Delivery...)"),
        "repository": MAYBE_STRING,
        "trigger": nullable("integer", "null: no trigger took it (a wrong signature)", minimum=1),
        "outcome": {"type": "string", "description": "accepted, ping, ignored, no_trigger, duplicate, rejected..."},
        "reason": MAYBE_STRING,
        "status_code": {"type": "integer", "description": "what buildhook answered the host"},
        "builds": {**IDS, "description": "the builds it started"},
    }, description="An inbound webhook a Git host sent (inbound_delivery_to_dict)."),
    "Overview": obj({
        "since": {**TIME, "description": "the window's start: midnight UTC, days - 1 days ago"},
        "days": {"type": "array", "items": obj({
            "day": {"type": "string", "format": "date"},
            "total": COUNT,
            "by_state": STATE_COUNTS,
        })},
        "total": COUNT,
        "succeeded": COUNT,
        "failed": COUNT,
        "success_rate": nullable("number", "succeeded / (succeeded + failed); null without either",
                                 minimum=0, maximum=1),
        "median_build_seconds": nullable("number", "started → finished of succeeded and failed builds", minimum=0),
        "p90_build_seconds": nullable("number", minimum=0),
        "median_queue_seconds": nullable("number", "created → started", minimum=0),
        "by_state": STATE_COUNTS,
    }, description="The overview page's numbers (overview_to_dict)."),
    "User": obj({
        "id": ID, "name": STRING, "role": {"type": "string", "enum": ["admin", "viewer"]}, "created_at": TIME,
    }, description="A user (user_to_dict); never the password."),
    "UserInput": obj({
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"},
        "role": {"type": "string", "enum": ["admin", "viewer"]},
        "password": PASSWORD,
    }, additionalProperties=False),
    "PasswordInput": obj({"password": PASSWORD}, additionalProperties=False),
    "Token": obj(TOKEN_FIELDS, description="An API token (token_to_dict): never the token or its hash."),
    "NewToken": obj({**TOKEN_FIELDS, "token": {"type": "string", "description": "send as Authorization: Bearer "
                                                                                "TOKEN; shown only here, once"}},
                    description="A token just created."),
    "TokenInput": obj({"user": {"type": "string", "description": "whose token (default: yours)"}}, [],
                      additionalProperties=False),
    "RunInput": obj({
        "branch": STRING, "tag": STRING,
        "sha": {"type": "string", "pattern": "^[0-9a-fA-F]{7,40}$",
                "description": "a commit of the default branch, or of branch when it is given too"},
    }, [], "Exactly one of branch, tag and sha; sha may be combined with branch.", minProperties=1),
    "Build": obj({
        "id": ID,
        "trigger": LINK,
        "rule": LINK,
        "provider": STRING,
        "repository": STRING,
        "state": {"type": "string", "enum": BUILD_STATES},
        "commit": {"type": "string", "description": "the full commit sha"},
        "short_sha": STRING,
        "commit_message": MAYBE_STRING,
        "author": MAYBE_STRING,
        "ref": {"type": "string", "description": "refs/heads/NAME or refs/tags/NAME; a request's build: the "
                                                "request ref fetched (refs/pull/N/head, refs/merge-requests/N/head, "
                                                "refs/pull-requests/N/from; Bitbucket Cloud: the head branch)"},
        "ref_type": {"type": "string", "enum": ["branch", "tag", "pull_request"]},
        "ref_name": STRING,
        "image": STRING,
        "tags": STRINGS,
        "digest": nullable("string", "set once pushed"),
        "pull": nullable("string", "image@digest, once pushed"),
        "error": nullable("string", "why a failed build failed"),
        "reason": nullable("string", "why a build was skipped or superseded"),
        "target": MAYBE_STRING,
        "platforms": {**STRINGS, "description": "the platforms it was built for; its digest is then an OCI image "
                                                "index's (empty: one image for the engine's platform)"},
        "attempts": COUNT,
        "cancel_requested": {"type": "boolean", "description": "someone asked to cancel it (a running build "
                                                               "stops soon after)"},
        "created_at": TIME,
        "started_at": MAYBE_TIME,
        "cloning_at": MAYBE_TIME,
        "building_at": MAYBE_TIME,
        "pushing_at": MAYBE_TIME,
        "finished_at": MAYBE_TIME,
        "origin": {"type": "string", "enum": ["push", "manual", "rebuild", "schedule"],
                   "description": "what started it: a push, a manual run, a rebuild, a schedule"},
        "started_by": nullable("string", "who ran or rebuilt it (null for a push)"),
        "rebuild_of": nullable("integer", "the build a rebuild repeats"),
        "pull_request": {"type": ["integer", "null"], "description": "the pull or merge request's number"},
        "base_branch": nullable("string", "a request's base (target) branch; ref_name is its head branch"),
        "fork": {"type": ["string", "null"], "enum": ["trusted", "untrusted", None],
                 "description": "a request from a fork, trusted by its rule or not"},
        "push": {"type": "boolean", "description": "false: the image is built, not pushed"},
        **openapi_team.BUILD_FIELDS,
    }, description="A build (build_to_dict)."),
    "LogLines": obj({
        "build": ID,
        "state": {"type": "string", "enum": BUILD_STATES},
        "lines": {"type": "array", "items": obj({"seq": ID, "text": STRING})},
        "next_after": {**COUNT, "description": "pass as after= to get only newer lines"},
    }, description="A build's log lines after a sequence number."),
    "HookResult": obj({
        "outcome": {"type": "string", "enum": ["accepted", "ping", "ignored", "no_trigger", "duplicate"]},
        "reason": MAYBE_STRING,
        "delivery": {**ID, "description": "the recorded delivery"},
        "builds": {**IDS, "description": "the builds queued"},
    }, description="The answer to a Git host webhook."),
    "RegistryResult": obj({
        "accepted": COUNT, "ignored": COUNT, "duplicates": COUNT,
        "deployments": {**IDS, "description": "the deployments queued"},
    }, description="The answer to a registry notification."),
    "RegistryEnvelope": obj({"events": {"type": "array", "items": {"type": "object"}}},
                            description="A CNCF distribution notification envelope."),
}
