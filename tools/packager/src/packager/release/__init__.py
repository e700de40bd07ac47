"""Release: publishing tested artifacts and keeping production's history.

Owns the stores (`stores`: interfaces, registry, one module per backend, the in-memory fake), where a
branch's artifact goes and the rule that a published key never changes (`publishing`), the release
history and "current" pointer (`history`), promote and rollback (`promotion`), verifying an artifact by
its store URI (`verification`), and what may be published where (`gates`). The push pipeline that
composes the stages into a publish is `packager.pipeline`'s.

Public: publish, publish_release, record_release, Published, Destination, Route, route, ImmutableKey,
PublishError, Entry, history, current, record, new_entry, released_models, ReleaseError, OtherBytes,
promote, Promotion, rollback, verify_target, Verification, Revision, resolve_revision, check_publishable,
SourceRefused; and `packager.release.stores`' names.
"""

from packager.release.gates import Revision, SourceRefused, check_publishable, resolve_revision
from packager.release.history import (
    Entry,
    OtherBytes,
    ReleaseError,
    current,
    history,
    new_entry,
    record,
    released_models,
)
from packager.release.promotion import Promotion, promote, rollback
from packager.release.publishing import (
    Destination,
    ImmutableKey,
    Published,
    PublishError,
    Route,
    publish,
    publish_release,
    record_release,
    route,
)
from packager.release.verification import Verification, verify_target

__all__ = [
    "Entry",
    "OtherBytes",
    "ReleaseError",
    "current",
    "history",
    "new_entry",
    "record",
    "released_models",
    "Promotion",
    "promote",
    "rollback",
    "Destination",
    "ImmutableKey",
    "PublishError",
    "Published",
    "Route",
    "publish",
    "publish_release",
    "record_release",
    "route",
    "Revision",
    "SourceRefused",
    "check_publishable",
    "resolve_revision",
    "Verification",
    "verify_target",
]
