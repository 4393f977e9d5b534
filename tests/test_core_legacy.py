"""The instance migration's pure review (core/legacy.py): what it plans, what it leaves to a
human, and that the plan carried out leaves nothing to plan."""

from __future__ import annotations

import uuid

from auzap_actors.core.legacy import Adopt, FillUserId, Kind, Remote, Row, review


def _apply(rows: list[Row], plan: list[FillUserId | Adopt]) -> list[Row]:
    """What `update` does to the table, in memory."""
    by_name = {row.name: row for row in rows}
    for change in plan:
        by_name[change.name] = Row(change.name, change.user_id)
    return list(by_name.values())


def test_the_plan_carried_out_leaves_nothing_to_plan() -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    rows = [Row(f"user_{a}", None), Row("legacy", None), Row(f"user_{c}", c)]
    remotes = [Remote(f"user_{b}", "id-b"), Remote(f"user_{c}", "id-c"), Remote("bot", "id")]
    first = review(rows, remotes, {f"user_{b}": 2, "gone": 1})
    assert first.plan == [FillUserId(f"user_{a}", a), Adopt(remotes[0], b)]
    assert first.count(Kind.ORPHANS_ADOPTABLE) == 2 and first.count(Kind.ORPHANS_UNKNOWN) == 1
    assert first.exit_code() == 1
    second = review(_apply(rows, first.plan), remotes, {f"user_{b}": 2, "gone": 1})
    assert second.plan == [] and second.count(Kind.ORPHANS_OWNED) == 2
    assert {(f.kind, f.name) for f in second.findings if f.action == "human"} == {
        (Kind.NO_USER_ID_BAD_NAME, "legacy"),
        (Kind.ONLY_IN_EVOLUTION_BAD_NAME, "bot"),
    }
    assert second.exit_code() == 3


def test_a_user_is_never_given_two_instances_nor_made_up_in_supabase() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    # Two claims on user a: the row that has it wins, the Evolution instance waits for a human.
    rows = [Row("old_name", a), Row(f"user_{b}", None)]
    remotes = [Remote(f"user_{a}", "x")]
    result = review(rows, remotes, {}, known_users=set())  # Supabase without user b
    assert result.plan == []
    assert result.count(Kind.USER_CLAIMED_TWICE) == 1 and result.count(Kind.UNKNOWN_USER) == 1
    allowed = review(rows, remotes, {}, known_users={b})
    assert allowed.plan == [FillUserId(f"user_{b}", b)]


def test_one_instance_only() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    rows = [Row(f"user_{a}", None), Row(f"user_{b}", None)]
    result = review(rows, [], {f"user_{a}": 1}, only=f"user_{a}")
    assert result.plan == [FillUserId(f"user_{a}", a)]
    assert {f.name for f in result.findings} == {f"user_{a}"}
