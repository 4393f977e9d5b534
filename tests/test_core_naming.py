"""Instance names: one per user, and the user read back from a name (core.naming)."""

from __future__ import annotations

import uuid

from auzap_actors.core.naming import instance_name_for, user_id_from_instance_name


def test_instance_names_round_trip() -> None:
    user = uuid.uuid4()
    name = instance_name_for(user)
    assert name == f"user_{user}"
    assert user_id_from_instance_name(name) == user
    assert user_id_from_instance_name(f"user_{str(user).upper()}") is None
    assert user_id_from_instance_name("someone_else") is None
