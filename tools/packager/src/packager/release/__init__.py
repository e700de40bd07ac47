"""Release: publishing tested artifacts and keeping production's history.

Owns the stores (`stores`: interfaces, registry, one module per backend, the in-memory fake), where a
branch's artifact goes and the rule that a published key never changes (`publishing`), the release
history and "current" pointer (`history`), promote and rollback (`promotion`), verifying an artifact by
its store URI (`verification`), and the push pipeline that composes every stage (`push`).

Public: publish, Published, Destination, Route, route, ImmutableKey, Entry, history,
current, record, new_entry, released_models, ReleaseError, promote, rollback, verify_target,
Verification, push_model, PushPlan, PushResult, DirtySource; and `packager.release.stores`' names.
"""

from packager.release.history import (
    Entry,
    ReleaseError,
    current,
    history,
    new_entry,
    record,
    released_models,
)
from packager.release.promotion import promote, rollback
from packager.release.publishing import (
    Destination,
    ImmutableKey,
    Published,
    Route,
    publish,
    route,
)
from packager.release.push import DirtySource, PushPlan, PushResult, push_model
from packager.release.verification import Verification, verify_target

__all__ = [
    "Entry",
    "ReleaseError",
    "current",
    "history",
    "new_entry",
    "record",
    "released_models",
    "promote",
    "rollback",
    "Destination",
    "ImmutableKey",
    "Published",
    "Route",
    "publish",
    "route",
    "DirtySource",
    "PushPlan",
    "PushResult",
    "push_model",
    "Verification",
    "verify_target",
]
