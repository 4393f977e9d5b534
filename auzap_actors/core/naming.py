"""Instance naming: a user's first (primary) Evolution instance is called `user_<uuid>`.

With AUZAP_MAX_INSTANCES_PER_USER above 1 a user may own more: `user_<uuid>_<n>` for
n = 2..max, each with an optional label the user chose.  With the default (1) only the
primary name exists, exactly as the seed names it."""

from __future__ import annotations

import re
import uuid

PREFIX = "user_"

# A label the user gives an extra instance: short, printable, and never mistaken for a name
# (no underscore, so never `user_...`).
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 .-]{0,39}$"
_LABEL = re.compile(LABEL_PATTERN)
_ORDINAL = re.compile(r"^_([2-9]|[1-9][0-9]{1,2})$")


def instance_name_for(user_id: uuid.UUID | str, ordinal: int = 1) -> str:
    """The user's instance name (the UUID in canonical lower-case form): `user_<uuid>` for the
    primary (ordinal 1), `user_<uuid>_<n>` for the n-th."""
    base = f"{PREFIX}{uuid.UUID(str(user_id))}"
    return base if ordinal == 1 else f"{base}_{ordinal}"


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


def ordinal_for_user(name: str, user_id: uuid.UUID | str) -> int | None:
    """n when `name` is the user's `user_<uuid>` (1) or `user_<uuid>_<n>` (2..999), else None.

    Only the canonical spelling counts, so a user can never name another user's instance."""
    base = instance_name_for(user_id)
    if name == base:
        return 1
    if not name.startswith(base):
        return None
    match = _ORDINAL.match(name[len(base) :])
    return int(match[1]) if match else None


def is_label(text: str) -> bool:
    """Whether `text` may be an instance's label (see LABEL_PATTERN)."""
    return _LABEL.fullmatch(text) is not None  # fullmatch: `$` would let a final newline by
