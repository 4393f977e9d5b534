"""The auto-reply decision, pure: which incoming messages get an AI reply, when, and which are
skipped and why.  `core.instance.step` calls `decide` for `TextsArrived` and `composed` for
`ReplyComposed`; the actor gathers the facts (counts from the database, the local time of the
instance's time zone) and carries the effects out.

Rules
-----

* Only a live, incoming text (not ``fromMe``, not history sync, not a status broadcast or a
  newsletter, not a group unless ``groups`` is on) with some text is a candidate.  Everything
  this service sends is ``fromMe``, so its own replies (and their echoes) never trigger one.
* A candidate from a contact whose reply is still waiting (``decided``, not yet composed) is
  folded into that reply (debounce): the reply's due time moves to ``now + debounce`` but never
  beyond ``debounce * MAX_DEBOUNCE_FACTOR`` after the first message, so a chatty contact is
  still answered.
* Otherwise, in this order: no responder, quiet hours, a human answered recently, the contact's
  hourly limit, the instance's daily limit → a recorded skip with that reason; else a new
  decision due after the debounce.  The limits count decisions that were not skipped or failed
  (``decided``, ``sending``, ``sent``) over the last rolling hour / 24 hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

# A reply waits at most this many debounce windows after its first message.
MAX_DEBOUNCE_FACTOR: Final = 4
HOUR_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No replies from ``start`` to ``end`` (minutes after local midnight, ``end`` excluded;
    ``start > end`` spans midnight) in ``timezone`` (an IANA name)."""

    start: int
    end: int
    timezone: str

    def covers(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True, slots=True)
class AutoReplyLimits:
    per_contact_hour: int = 5
    per_instance_day: int = 200
    quiet_hours: QuietHours | None = None
    human_pause_min: int | None = None  # only when no human answered in this many minutes
    groups: bool = False


class _Keep:
    """A setting the patch leaves as it is (None means "clear" for nullable ones)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
Keep = _Keep  # the type of KEEP, for code that builds patches


@dataclass(frozen=True, slots=True)
class LimitsPatch:
    """The limits a settings change names; KEEP leaves one as it is."""

    per_contact_hour: int | _Keep = KEEP
    per_instance_day: int | _Keep = KEEP
    quiet_hours: QuietHours | _Keep | None = KEEP
    human_pause_min: int | _Keep | None = KEEP
    groups: bool | _Keep = KEEP

    def apply(self, limits: AutoReplyLimits) -> AutoReplyLimits:
        changes = {
            name: value
            for name in (
                "per_contact_hour",
                "per_instance_day",
                "quiet_hours",
                "human_pause_min",
                "groups",
            )
            if not isinstance(value := getattr(self, name), _Keep)
        }
        return replace(limits, **changes) if changes else limits


def limits_view(limits: AutoReplyLimits) -> dict[str, object]:
    """The InstanceView fields (named as in `PATCH /api/whatsapp/settings`)."""
    quiet = limits.quiet_hours
    return {
        "auto_reply_per_contact_hour": limits.per_contact_hour,
        "auto_reply_per_instance_day": limits.per_instance_day,
        "auto_reply_quiet_hours": None
        if quiet is None
        else {
            "start": f"{quiet.start // 60:02d}:{quiet.start % 60:02d}",
            "end": f"{quiet.end // 60:02d}:{quiet.end % 60:02d}",
            "timezone": quiet.timezone,
        },
        "auto_reply_human_pause_min": limits.human_pause_min,
        "auto_reply_groups": limits.groups,
    }


# ---- inputs' data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingText:
    """A message a batch stored for the first time (re-deliveries are never here)."""

    wa_id: str
    chat_jid: str
    from_me: bool
    is_group: bool
    type: str
    text: str | None
    live: bool  # False for history sync (`messages.set`)


@dataclass(frozen=True, slots=True)
class ChatFacts:
    """What the database says about one chat, read by the actor before the step."""

    replies_last_hour: int = 0
    open_reply: int | None = None  # id of a reply still `decided` (not composed yet)
    open_reply_first_at: float | None = None  # when that reply was decided
    last_human_at: float | None = None  # our side's last message not sent by auto-reply


@dataclass(frozen=True, slots=True)
class ReplyFacts:
    responder: bool  # a responder is configured
    debounce_s: float
    replies_last_day: int = 0
    local_minute: int | None = None  # minute of day in the quiet hours' time zone
    chats: dict[str, ChatFacts] = field(default_factory=dict)


# ---- effects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordReply:
    """Record a decision to reply (with the triggering inbox row's transaction)."""

    trigger_wa_id: str
    chat_jid: str
    due_at: float
    answers: int = 1  # the trigger, and the later messages of its batch folded into it


@dataclass(frozen=True, slots=True)
class ExtendReply:
    """Fold one more message into a waiting reply; it is due at ``due_at`` now."""

    reply_id: int
    due_at: float


@dataclass(frozen=True, slots=True)
class SkipReply:
    """Record that this message gets no reply, and why (logged, counted)."""

    trigger_wa_id: str
    chat_jid: str
    reason: str


@dataclass(frozen=True, slots=True)
class SendReply:
    """Show "composing", send the text, store it with ``auto_reply: true``."""

    reply_id: int
    chat_jid: str
    text: str


@dataclass(frozen=True, slots=True)
class SettleReply:
    """A decided reply ends without a send."""

    reply_id: int
    state: Literal["failed", "skipped"]
    reason: str


@dataclass(frozen=True, slots=True)
class Recompose:
    """Messages were folded in while the reply was composed: compose it again."""

    reply_id: int


ReplyEffect = RecordReply | ExtendReply | SkipReply | SendReply | SettleReply | Recompose


# ---- the decision ---------------------------------------------------------------------------


def ignored_because(text: IncomingText, limits: AutoReplyLimits) -> str | None:
    """Why a message is not a candidate at all (None: it is one).  Not recorded."""
    if not text.live:
        return "history sync"
    if text.from_me:
        return "sent from this number"
    if text.chat_jid.endswith(("@broadcast", "@newsletter")):
        return "broadcast"
    if text.is_group and not limits.groups:
        return "group"
    if text.type != "text" or not (text.text or "").strip():
        return "not a text"
    return None


def decide(
    enabled: bool,
    limits: AutoReplyLimits,
    texts: tuple[IncomingText, ...],
    facts: ReplyFacts,
    now: float,
) -> list[ReplyEffect]:
    """The effects for the new messages of one batch, in order."""
    if not enabled:
        return []
    effects: list[ReplyEffect] = []
    chats = dict(facts.chats)
    day = facts.replies_last_day
    for text in texts:
        if ignored_because(text, limits) is not None:
            continue
        chat = chats.get(text.chat_jid, ChatFacts())
        if chat.open_reply is not None:
            first = now if chat.open_reply_first_at is None else chat.open_reply_first_at
            latest = first + facts.debounce_s * MAX_DEBOUNCE_FACTOR
            effects.append(ExtendReply(chat.open_reply, min(now + facts.debounce_s, latest)))
            continue
        reason = _refusal(limits, chat, facts, day, now)
        if reason is not None:
            effects.append(SkipReply(text.wa_id, text.chat_jid, reason))
            continue
        # A placeholder id (negative: the effect's index): later messages of this batch from
        # the same chat fold into the reply recorded here.
        placeholder = -(len(effects) + 1)
        effects.append(RecordReply(text.wa_id, text.chat_jid, now + facts.debounce_s))
        day += 1
        chats[text.chat_jid] = replace(
            chat,
            replies_last_hour=chat.replies_last_hour + 1,
            open_reply=placeholder,
            open_reply_first_at=now,
        )
    return _resolve_placeholders(effects)


def _refusal(
    limits: AutoReplyLimits, chat: ChatFacts, facts: ReplyFacts, day: int, now: float
) -> str | None:
    if not facts.responder:
        return "no AI responder is configured"
    quiet = limits.quiet_hours
    if quiet is not None and facts.local_minute is not None and quiet.covers(facts.local_minute):
        return "quiet hours"
    pause = limits.human_pause_min
    if pause is not None and chat.last_human_at is not None:
        if now - chat.last_human_at < pause * 60:
            return f"a human answered within {pause} min"
    if chat.replies_last_hour >= limits.per_contact_hour:
        return f"contact limit ({limits.per_contact_hour} per hour)"
    if day >= limits.per_instance_day:
        return f"instance limit ({limits.per_instance_day} per day)"
    return None


def _resolve_placeholders(effects: list[ReplyEffect]) -> list[ReplyEffect]:
    """A message folded into a reply recorded in the same batch: the RecordReply's due time
    moves instead (the row has no id until it is written)."""
    out = list(effects)
    for effect in effects:
        if isinstance(effect, ExtendReply) and effect.reply_id < 0:
            target = -effect.reply_id - 1
            recorded = out[target]
            assert isinstance(recorded, RecordReply)
            out[target] = replace(
                recorded,
                due_at=max(recorded.due_at, effect.due_at),
                answers=recorded.answers + 1,
            )
    return [e for e in out if not (isinstance(e, ExtendReply) and e.reply_id < 0)]


def composed(
    enabled: bool,
    connected: bool,
    reply_id: int,
    chat_jid: str,
    text: str | None,
    error: str | None,
    answers_then: int,
    answers_now: int,
) -> ReplyEffect:
    """What follows a composed reply (or the responder's failure)."""
    if answers_now != answers_then:
        return Recompose(reply_id)
    if not enabled:
        return SettleReply(reply_id, "skipped", "auto-reply was turned off")
    if error is not None:
        return SettleReply(reply_id, "failed", error)
    if not text or not text.strip():
        return SettleReply(reply_id, "failed", "the responder answered nothing")
    if not connected:
        return SettleReply(reply_id, "failed", "WhatsApp is not connected")
    return SendReply(reply_id, chat_jid, text.strip())
