"""OpenAPI schema fragments of a team's service (issue 19): fair sharing, schedules, rebuilds, retention.

Spliced into ``webhooks.openapi_schemas`` (``Trigger``, ``TriggerInput``, ``TriggerPatch``, the rule
schemas and ``Build``); kept here so that module stays about the API as a whole.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

MAX_CONCURRENT: Schema = {
    "type": ["integer", "null"], "minimum": 1, "maximum": 1000,
    "description": "builds of this trigger running at once; the others wait queued, in order, without holding a "
                   "worker (GET /api/builds/{id} shows queue). null: no limit but the number of workers"}
SCHEDULE: Schema = {
    "type": ["string", "null"],
    "description": "cron, five fields, UTC (e.g. \"0 3 * * 1\"): rebuild the default branch's tip then; builds "
                   "are marked scheduled_for. null: no schedule. Refused (400) unless cronsim parses it"}
TRIGGER_INPUT: dict[str, Schema] = {"max_concurrent": MAX_CONCURRENT, "schedule": SCHEDULE}
TRIGGER_SHOWN: dict[str, Schema] = {
    **TRIGGER_INPUT,
    "schedule_next_at": {"type": ["string", "null"], "format": "date-time",
                         "description": "when the schedule next fires (ISO 8601, UTC); null without one"}}

REBUILD: Schema = {"type": "string", "enum": ["always", "changed"], "default": "changed",
                   "description": "scheduled runs: always rebuild (e.g. for base-image fixes), or skip a commit "
                                  "this rule already built successfully (the reason is in the delivery)"}
RETENTION: Schema = {
    "type": ["object", "null"], "properties": {"keep": {"type": "integer", "minimum": 1, "maximum": 10000}},
    "required": ["keep"], "additionalProperties": False,
    "description": "keep the newest keep per-commit tags (templates with {sha}, {short_sha} or {timestamp}) this "
                   "rule pushed; the workers delete older ones from the registry, each deletion recorded. null: all"}
RULE_FIELDS: dict[str, Schema] = {"rebuild": REBUILD, "retention": RETENTION}

BUILD_FIELDS: dict[str, Schema] = {
    "queue": {
        "type": ["object", "null"],
        "description": "a queued build's place: null unless queued",
        "properties": {
            "ahead": {"type": "integer", "minimum": 0,
                      "description": "builds queued before it: of its trigger when its limit holds it back, "
                                     "else all (it waits for a worker)"},
            "limit": {"type": ["integer", "null"], "minimum": 1, "description": "the trigger's max_concurrent"},
            "running": {"type": ["integer", "null"], "minimum": 0,
                        "description": "builds of its trigger running (with a limit)"},
            "text": {"type": "string",
                     "description": "what it waits for, e.g. \"1 ahead; trigger limit 1 (1 running)\" or "
                                    "\"5 ahead; waiting for a worker\""},
        },
        "required": ["ahead", "limit", "running", "text"],
    },
    "scheduled_for": {"type": ["string", "null"], "format": "date-time",
                      "description": "the schedule's due time that made this build (ISO 8601, UTC); null: a push "
                                     "or a manual run"},
}
