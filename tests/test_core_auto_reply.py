"""The auto-reply decision (`core.auto_reply`, through `core.instance.step`): scripted cases and
invariants under arbitrary batches and facts (hypothesis).  Pure: no database, no clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from auzap_actors.core.auto_reply import (
    KEEP,
    MAX_DEBOUNCE_FACTOR,
    AutoReplyLimits,
    ChatFacts,
    ExtendReply,
    IncomingText,
    LimitsPatch,
    QuietHours,
    Recompose,
    RecordReply,
    ReplyFacts,
    SendReply,
    SettleReply,
    SkipReply,
    composed,
    decide,
    ignored_because,
)
from auzap_actors.core.health import HealthPolicy, HealthState
from auzap_actors.core.instance import ReplyComposed, SettingsChanged, TextsArrived, step
from auzap_actors.core.state import InstanceState, Status
from auzap_actors.core.views import InstanceSnapshot, instance_view

NOW = 1_800_000_000.0
CHATS = ["5511900000001@s.whatsapp.net", "5511900000002@s.whatsapp.net", "120363@g.us"]


def _text(n: int, chat: str = CHATS[0], **changes: object) -> IncomingText:
    text = IncomingText(f"W{n}", chat, False, chat.endswith("@g.us"), "text", f"msg {n}", True)
    return replace(text, **changes)  # type: ignore[arg-type]


def _facts(**changes: object) -> ReplyFacts:
    return replace(ReplyFacts(responder=True, debounce_s=3.0), **changes)  # type: ignore[arg-type]


def test_a_text_is_decided_and_later_ones_of_its_chat_fold_into_it() -> None:
    effects = decide(True, AutoReplyLimits(), (_text(1), _text(2), _text(3)), _facts(), NOW)
    # One reply answering all three (the record counts them: `answers`).
    assert effects == [RecordReply("W1", CHATS[0], NOW + 3.0, answers=3)]
    waiting = ChatFacts(open_reply=7, open_reply_first_at=NOW - 1)
    effects = decide(True, AutoReplyLimits(), (_text(4),), _facts(chats={CHATS[0]: waiting}), NOW)
    assert effects == [ExtendReply(7, NOW + 3.0)]
    # A contact who keeps writing is still answered: never later than 4 windows after the first.
    late = ChatFacts(open_reply=7, open_reply_first_at=NOW - 11)
    effects = decide(True, AutoReplyLimits(), (_text(5),), _facts(chats={CHATS[0]: late}), NOW)
    assert effects == [ExtendReply(7, NOW - 11 + 3.0 * MAX_DEBOUNCE_FACTOR)]


def test_what_is_never_answered() -> None:
    limits = AutoReplyLimits()
    never = [
        _text(1, from_me=True),
        _text(2, chat=CHATS[2]),
        _text(3, chat="status@broadcast"),
        _text(4, live=False),
        _text(5, type="image", text=None),
        _text(6, text="   "),
    ]
    assert decide(True, limits, tuple(never), _facts(), NOW) == []
    assert decide(False, limits, (_text(7),), _facts(), NOW) == []
    # Groups only when enabled.
    assert decide(True, replace(limits, groups=True), (never[1],), _facts(), NOW) == [
        RecordReply("W2", CHATS[2], NOW + 3.0)
    ]


def test_refusals_in_order() -> None:
    limits = AutoReplyLimits(per_contact_hour=2, per_instance_day=10, human_pause_min=5)
    text = (_text(1),)
    assert decide(True, limits, text, _facts(responder=False), NOW) == [
        SkipReply("W1", CHATS[0], "no AI responder is configured")
    ]
    quiet = replace(limits, quiet_hours=QuietHours(22 * 60, 7 * 60, "UTC"))
    assert decide(True, quiet, text, _facts(local_minute=23 * 60), NOW)[0] == SkipReply(
        "W1", CHATS[0], "quiet hours"
    )
    assert decide(True, quiet, text, _facts(local_minute=12 * 60), NOW)[0] == RecordReply(
        "W1", CHATS[0], NOW + 3.0
    )
    human = {CHATS[0]: ChatFacts(last_human_at=NOW - 60)}
    assert decide(True, limits, text, _facts(chats=human), NOW)[0].reason == (  # type: ignore[union-attr]
        "a human answered within 5 min"
    )
    busy = {CHATS[0]: ChatFacts(replies_last_hour=2)}
    assert decide(True, limits, text, _facts(chats=busy), NOW) == [
        SkipReply("W1", CHATS[0], "contact limit (2 per hour)")
    ]
    assert decide(True, limits, text, _facts(replies_last_day=10), NOW) == [
        SkipReply("W1", CHATS[0], "instance limit (10 per day)")
    ]


def test_quiet_hours_across_midnight_and_within_a_day() -> None:
    night = QuietHours(22 * 60, 7 * 60, "UTC")
    assert night.covers(23 * 60) and night.covers(0) and night.covers(6 * 60 + 59)
    assert not night.covers(7 * 60) and not night.covers(12 * 60)
    lunch = QuietHours(12 * 60, 13 * 60, "UTC")
    assert lunch.covers(12 * 60 + 30) and not lunch.covers(13 * 60) and not lunch.covers(0)


def test_a_composed_reply_is_sent_settled_or_composed_again() -> None:
    assert composed(True, True, 1, CHATS[0], " Olá! ", None, 2, 2) == SendReply(1, CHATS[0], "Olá!")
    assert composed(True, True, 1, CHATS[0], "Olá", None, 2, 3) == Recompose(1)
    assert composed(False, True, 1, CHATS[0], "Olá", None, 2, 2) == SettleReply(
        1, "skipped", "auto-reply was turned off"
    )
    assert composed(True, True, 1, CHATS[0], None, "boom", 1, 1) == SettleReply(1, "failed", "boom")
    assert composed(True, False, 1, CHATS[0], "Olá", None, 1, 1) == SettleReply(
        1, "failed", "WhatsApp is not connected"
    )


def _snapshot(auto_reply: bool = True) -> InstanceSnapshot:
    return InstanceSnapshot(
        "user_x",
        "u1",
        None,
        state=InstanceState(Status.OPEN, phone_number="5511999999999"),
        health=HealthState(status="healthy", healthy_since=0.0),
        auto_reply=auto_reply,
        in_evolution=True,
    )


def test_through_the_step_decisions_change_no_state_and_settings_persist() -> None:
    snap = _snapshot()
    policy = HealthPolicy()
    new, effects = step(snap, TextsArrived((_text(1),), _facts()), NOW, policy, 0.0)
    assert new == snap and effects == (RecordReply("W1", CHATS[0], NOW + 3.0),)
    new, effects = step(snap, ReplyComposed(4, CHATS[0], "Oi", None, 1, 1), NOW, policy, 0.0)
    assert new == snap and effects == (SendReply(4, CHATS[0], "Oi"),)
    patch = LimitsPatch(per_contact_hour=2, quiet_hours=QuietHours(60, 120, "UTC"))
    new, effects = step(snap, SettingsChanged(limits=patch), NOW, policy, 0.0)
    assert new.auto_reply_limits == AutoReplyLimits(
        per_contact_hour=2, quiet_hours=QuietHours(60, 120, "UTC")
    )
    assert effects[0].__class__.__name__ == "Persist"
    view = instance_view(new, NOW)
    assert view["auto_reply_quiet_hours"] == {"start": "01:00", "end": "02:00", "timezone": "UTC"}
    assert "auto_reply_prompt" not in view
    cleared = LimitsPatch(quiet_hours=None, per_instance_day=KEEP)
    again, _ = step(new, SettingsChanged(limits=cleared), NOW, policy, 0.0)
    assert again.auto_reply_limits.quiet_hours is None
    assert again.auto_reply_limits.per_contact_hour == 2


# ---- invariants -------------------------------------------------------------------------------

texts_st = st.builds(
    IncomingText,
    wa_id=st.text("ABCDEF0123456789", min_size=1, max_size=6),
    chat_jid=st.sampled_from([*CHATS, "status@broadcast"]),
    from_me=st.booleans(),
    is_group=st.just(False),
    type=st.sampled_from(["text", "text", "image"]),
    text=st.one_of(st.none(), st.just(""), st.just("oi")),
    live=st.booleans(),
).map(lambda t: replace(t, is_group=t.chat_jid.endswith("@g.us")))
chat_facts_st = st.builds(
    ChatFacts,
    replies_last_hour=st.integers(0, 6),
    open_reply=st.one_of(st.none(), st.integers(1, 1000)),
    open_reply_first_at=st.one_of(st.none(), st.floats(NOW - 100, NOW)),
    last_human_at=st.one_of(st.none(), st.floats(NOW - 3600, NOW)),
)
limits_st = st.builds(
    AutoReplyLimits,
    per_contact_hour=st.integers(1, 5),
    per_instance_day=st.integers(1, 8),
    quiet_hours=st.one_of(st.none(), st.just(QuietHours(600, 700, "UTC"))),
    human_pause_min=st.one_of(st.none(), st.integers(1, 60)),
    groups=st.booleans(),
)
facts_st = st.builds(
    ReplyFacts,
    responder=st.booleans(),
    debounce_s=st.floats(0, 10),
    replies_last_day=st.integers(0, 10),
    local_minute=st.one_of(st.none(), st.integers(0, 1439)),
    chats=st.dictionaries(st.sampled_from(CHATS), chat_facts_st, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(
    enabled=st.booleans(),
    limits=limits_st,
    texts=st.lists(texts_st, max_size=25),
    facts=facts_st,
)
def test_limits_hold_and_every_candidate_is_accounted_for(
    enabled: bool,
    limits: AutoReplyLimits,
    texts: list[IncomingText],
    facts: ReplyFacts,
) -> None:
    effects = decide(enabled, limits, tuple(texts), facts, NOW)
    if not enabled:
        assert effects == []
        return
    records = [e for e in effects if isinstance(e, RecordReply)]
    candidates = [t for t in texts if ignored_because(t, limits) is None]
    by_chat = Counter(r.chat_jid for r in records)
    for chat, count in by_chat.items():
        before = facts.chats.get(chat, ChatFacts())
        # One new decision per chat at most (the rest fold into it), none past the limit,
        # none while one is waiting.
        assert count == 1
        assert before.replies_last_hour < limits.per_contact_hour
        assert before.open_reply is None
    assert facts.replies_last_day + len(records) <= max(
        limits.per_instance_day, facts.replies_last_day
    )
    if records:
        assert facts.responder
    # Never a decision or a skip for a message that is not a candidate.
    candidate_ids = {t.wa_id for t in candidates}
    for effect in effects:
        if isinstance(effect, RecordReply | SkipReply):
            assert effect.trigger_wa_id in candidate_ids
        if isinstance(effect, RecordReply | ExtendReply):
            assert effect.due_at <= NOW + facts.debounce_s + 1e-6
        if isinstance(effect, ExtendReply):
            assert effect.reply_id > 0  # placeholders never escape
    # Every candidate got exactly one outcome: decided, skipped, or folded into a waiting
    # reply (of before, or decided earlier in this batch).
    outcomes = len(records) + sum(isinstance(e, SkipReply) for e in effects)
    outcomes += sum(isinstance(e, ExtendReply) for e in effects)
    folded_in_batch = len(candidates) - outcomes
    assert folded_in_batch >= 0
    assert folded_in_batch <= len(candidates) - len(by_chat)
