"""The database models, one module per domain; importing this package registers them all.

Typed SQLAlchemy 2.0 models. The schema itself is owned by the Alembic migrations in
``builder/db/migrations``; keep the two in step.
"""

from builder.db.models.accounts import (
    ApiToken,
    AuditEntry,
    LoginFailure,
    SignInSession,
    User,
)
from builder.db.models.base import Base, UTCDateTime, utcnow
from builder.db.models.builds import (
    Build,
    BuildLogLine,
    BuildState,
    Delivery,
    DeliveryRequest,
)
from builder.db.models.deploys import (
    Deployment,
    DeployRule,
    DeployTarget,
    Environment,
    RegistryEvent,
    RetentionDeletion,
)
from builder.db.models.notify import DeliveryAttempt, OutboundDelivery, Subscription
from builder.db.models.triggers import IntakeConfigVersion, Trigger, TriggerRule

__all__ = [
    "Base",
    "UTCDateTime",
    "utcnow",
    "BuildState",
    "Trigger",
    "TriggerRule",
    "IntakeConfigVersion",
    "Delivery",
    "DeliveryRequest",
    "Build",
    "BuildLogLine",
    "RegistryEvent",
    "DeployRule",
    "DeployTarget",
    "Deployment",
    "Environment",
    "AuditEntry",
    "Subscription",
    "OutboundDelivery",
    "DeliveryAttempt",
    "User",
    "ApiToken",
    "SignInSession",
    "LoginFailure",
    "RetentionDeletion",
]
