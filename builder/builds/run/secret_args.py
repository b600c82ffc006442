"""Secret build args: a rule's ``secret_build_args``, stored encrypted, given to its builds.

A rule's ``trigger_rules.secret_build_args_enc`` is JSON: each name with its value sealed by
``SecretBox`` (Fernet, under BUILDHOOK_SECRET_KEY), e.g. ``{"NPM_TOKEN": "gAAAAB..."}``. The
names are not secret (the API and the pages show them, without the key); the values are only
opened by the worker that runs a build (``secret_build_args``), which passes them to the engine
as build args and masks them in the build's log. They are never copied into a ``builds`` row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy.orm import Session

from builder.errors import InputError
from builder.db.models import Build, TriggerRule
from builder.secrets import SecretBox


def _sealed(stored: str | None) -> dict[str, str]:
    return json.loads(stored) if stored else {}


def secret_build_arg_names(stored: str | None) -> list[str]:
    """The names of a rule's secret build args (what is shown), from its stored column."""
    return list(_sealed(stored))


def seal_secret_build_args(box: SecretBox, given: Mapping[str, str | None], stored: str | None = None) -> str | None:
    """The column value for ``given`` (NAME -> value; a value None keeps the stored one), or None for none.

    Raises InputError for a kept name that has no stored value.
    """
    kept = _sealed(stored)
    sealed: dict[str, str] = {}
    for name, value in given.items():
        if value is not None:
            sealed[name] = box.seal(value)
        elif name in kept:
            sealed[name] = kept[name]
        else:
            raise InputError(f"secret build arg {name!r} has no value yet: send it as {{{name!r}: value}}")
    return json.dumps(sealed) if sealed else None


def open_secret_build_args(box: SecretBox, stored: str | None) -> dict[str, str]:
    """NAME -> value; ValueError if BUILDHOOK_SECRET_KEY is not the key they were stored with."""
    return {name: box.open(token) for name, token in _sealed(stored).items()}


def secret_build_args(session: Session, box: SecretBox, build: Build) -> dict[str, str]:
    """The secret build args of the build's rule, decrypted: {} when it has none or the rule is gone.

    For the pipeline only: merge them into the engine's build args and mask their values in the log.
    """
    if build.rule_id is None or build.fork == "untrusted":  # a fork's request never gets them
        return {}
    rule = session.get(TriggerRule, build.rule_id)
    if rule is None:
        return {}
    return open_secret_build_args(box, rule.secret_build_args_enc)
