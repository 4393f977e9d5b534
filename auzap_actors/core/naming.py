"""Instance naming: every user owns exactly one Evolution instance called `user_<uuid>`."""

from __future__ import annotations

import uuid

PREFIX = "user_"


def instance_name_for(user_id: uuid.UUID | str) -> str:
    """The one instance name of a user (the UUID in canonical lower-case form)."""
    return f"{PREFIX}{uuid.UUID(str(user_id))}"


def user_id_from_instance_name(name: str) -> uuid.UUID | None:
    """The user a `user_<uuid>` name belongs to, or None for any other name."""
    if not name.startswith(PREFIX):
        return None
    try:
        parsed = uuid.UUID(name[len(PREFIX) :])
    except ValueError:
        return None
    # Only the canonical spelling is ours; `user_{UPPER}` would be a second instance.
    return parsed if instance_name_for(parsed) == name else None
