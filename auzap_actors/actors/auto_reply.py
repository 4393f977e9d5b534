"""What an instance actor does for auto-reply (README "AI auto-reply"): the decisions the core
step makes for new messages are recorded in the transaction that applies them; a companion
task of the actor (the composer) waits for each reply's due time, asks the responder, and
hands the text to the actor, which sends it.

Exactly once: a decision is a row keyed by the triggering message (unique), written before
anything is sent; `sending` (with the text) is committed before sendText is called.  At start
the composer picks up every row not settled: `decided` rows are composed and sent as usual;
a `sending` row (a crash during the send) is settled `sent` if the send's echo (Evolution's
`send.message`, stored like any webhook) is there, and sent again only when no echo arrived
within `resend_grace_s` of the attempt.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import trio

from ..ai.responder import ReplyRequest, Responder, ResponderError, Turn
from ..core.auto_reply import (
    ExtendReply,
    IncomingText,
    RecordReply,
    ReplyFacts,
    SendReply,
    SettleReply,
    SkipReply,
    ignored_because,
)
from ..core.instance import TextsArrived, step
from ..core.payloads import Batch, parse_message
from ..core.payloads.records import GROUP_SERVER
from ..core.views import InstanceSnapshot
from ..evolution.errors import EvolutionError, EvolutionUnavailable
from ..store import auto_replies as rows
from ..store.auto_replies import ReplyRow
from ..store.messages import Applied, BatchWriter
from .mailbox import CallTimeout, Mailbox, MailboxFull
from .messages import ReplyReady, ResumeSend

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AutoReplyStats:
    """Per service (never process-global): outcomes counted for /admin/tree and, through
    `on_count`, the `auzap_auto_replies_total{outcome}` counter."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    latest_failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10))
    on_count: Callable[[str], None] | None = None

    def count(self, outcome: str, reason: str | None = None) -> None:
        self.counts[outcome] += 1
        if self.on_count is not None:
            self.on_count(outcome)
        if outcome == "skipped" and reason:
            self.skipped_reasons[reason.split(" (")[0]] += 1

    def failed(self, instance: str, reason: str, at: float) -> None:
        self.count("failed")
        self.latest_failures.append({"instance": instance, "reason": reason, "at": at})


@dataclass(slots=True)
class AutoReplyConfig:
    responder: Responder | None = None  # None: auto-reply cannot be turned on
    debounce_s: float = 3.0
    context_messages: int = 20
    resend_grace_s: float = 30.0
    typing_ms: int = 1000
    stats: AutoReplyStats = field(default_factory=AutoReplyStats)

    def snapshot(self) -> dict[str, Any]:
        """The `auto_reply` entry of /admin/tree."""
        stats = self.stats
        return {
            "responder": None if self.responder is None else self.responder.snapshot(),
            "counts": dict(stats.counts),
            "skipped_reasons": dict(stats.skipped_reasons),
            "latest_failures": list(stats.latest_failures),
            "debounce_s": self.debounce_s,
        }


def _local_minute(snapshot: InstanceSnapshot, now: float) -> int | None:
    quiet = snapshot.auto_reply_limits.quiet_hours
    if quiet is None:
        return None
    try:
        local = datetime.fromtimestamp(now, ZoneInfo(quiet.timezone))
    except (KeyError, ValueError):  # validated when set; a zone removed since → no quiet hours
        return None
    return local.hour * 60 + local.minute


def incoming_texts(applied: Applied) -> tuple[IncomingText, ...]:
    """The messages a batch stored for the first time (a re-delivery is never new)."""
    return tuple(
        IncomingText(
            wa_id=m["wa_message_id"],
            chat_jid=m["remote_jid"],
            from_me=bool(m["from_me"]),
            is_group=str(m["remote_jid"]).endswith(GROUP_SERVER),
            type=str(m["type"]),
            text=m["text"],
            live=True,  # only live batches list new messages (history sync does not)
        )
        for m in applied.new_messages
    )


async def decide_in_transaction(
    deps: Any, conn: Any, snapshot: InstanceSnapshot, applied: Applied
) -> bool:
    """Run the step for a batch's new messages and record its decisions on `conn` (inside
    the transaction that applies the batch).  True when a reply was decided or extended."""
    if not snapshot.auto_reply:
        return False
    config: AutoReplyConfig = deps.auto_reply
    now: float = deps.now()
    texts = incoming_texts(applied)
    limits = snapshot.auto_reply_limits
    chats = {t.chat_jid for t in texts if ignored_because(t, limits) is None}
    if not chats:
        return False
    name = snapshot.instance_name
    facts = ReplyFacts(
        responder=config.responder is not None,
        debounce_s=config.debounce_s,
        replies_last_day=await rows.replies_last_day(conn, name, now),
        local_minute=_local_minute(snapshot, now),
        chats={
            jid: await rows.chat_facts(
                conn, name, jid, now, human_pause=limits.human_pause_min is not None
            )
            for jid in chats
        },
    )
    _, effects = step(snapshot, TextsArrived(texts, facts), now, deps.health_policy, 0.0)
    woke = False
    for effect in effects:
        match effect:
            case RecordReply(trigger_wa_id=wa_id, chat_jid=chat, due_at=due, answers=answers):
                if await rows.record(conn, name, wa_id, chat, due, now, answers) is not None:
                    config.stats.count("decided")
                    woke = True
            case ExtendReply(reply_id=reply_id, due_at=due):
                if await rows.extend(conn, name, reply_id, due):
                    config.stats.count("debounced")
                    woke = True
            case SkipReply(trigger_wa_id=wa_id, chat_jid=chat, reason=reason):
                if await rows.skip(conn, name, wa_id, chat, reason, now):
                    config.stats.count("skipped", reason)
                    log.info("auto-reply skipped for %s in %s: %s", wa_id, name, reason)
    return woke


# ---- sending (in the actor) -------------------------------------------------------------------


async def send(
    deps: Any,
    config: AutoReplyConfig,
    snapshot: InstanceSnapshot,
    effect: SendReply,
    publish: Callable[[InstanceSnapshot, Applied], None],
) -> None:
    """Typing, then the text; stored with `auto_reply: true` and pushed like any message."""
    name = snapshot.instance_name
    await rows.mark_sending(deps.pool, name, effect.reply_id, effect.text, deps.now())
    try:
        await deps.evolution.send_presence(name, effect.chat_jid, "composing", config.typing_ms)
    except EvolutionError as exc:
        log.info("auto-reply %s of %s: no typing indicator (%s)", effect.reply_id, name, exc)
    try:
        answer = await deps.evolution.send_text(name, effect.chat_jid, effect.text)
    except EvolutionUnavailable as exc:
        if exc.request_sent:
            # It may have gone: the echo decides, after the grace (never a blind resend).
            log.warning("auto-reply %s of %s: send uncertain (%s)", effect.reply_id, name, exc)
            config.stats.count("uncertain")
            return
        await _fail(deps, config, name, effect.reply_id, f"Evolution unavailable: {exc}")
        return
    except EvolutionError as exc:
        await _fail(deps, config, name, effect.reply_id, f"Evolution refused the send: {exc}")
        return
    await _store_sent(deps, config, snapshot, effect.reply_id, answer, publish)


async def _store_sent(
    deps: Any,
    config: AutoReplyConfig,
    snapshot: InstanceSnapshot,
    reply_id: int,
    answer: dict[str, Any],
    publish: Callable[[InstanceSnapshot, Applied], None],
) -> None:
    name = snapshot.instance_name
    record, aliases = parse_message(answer)
    if record is None:
        await _fail(deps, config, name, reply_id, "Evolution answered sendText without a message")
        return
    async with deps.pool.acquire() as conn:
        async with conn.transaction():
            applied = await BatchWriter(conn, name).apply(
                Batch(aliases=aliases, messages=(record,))
            )
            await rows.mark_sent(conn, name, reply_id, record.wa_id, deps.now())
    for message in applied.new_messages:
        message["auto_reply"] = True
    config.stats.count("sent")
    log.info("auto-reply %s of %s sent as %s", reply_id, name, record.wa_id)
    publish(snapshot, applied)


async def _fail(deps: Any, config: AutoReplyConfig, name: str, reply_id: int, why: str) -> None:
    await rows.settle(deps.pool, name, reply_id, "failed", why, deps.now())
    config.stats.failed(name, why, deps.now())
    log.warning("auto-reply %s of %s failed: %s", reply_id, name, why)


async def settle(deps: Any, config: AutoReplyConfig, name: str, effect: SettleReply) -> None:
    if effect.state == "failed":
        await _fail(deps, config, name, effect.reply_id, effect.reason)
        return
    await rows.settle(deps.pool, name, effect.reply_id, effect.state, effect.reason, deps.now())
    config.stats.count(effect.state, effect.reason)
    log.info("auto-reply %s of %s %s: %s", effect.reply_id, name, effect.state, effect.reason)


async def resume_sending(
    deps: Any,
    config: AutoReplyConfig,
    snapshot: InstanceSnapshot,
    reply: ReplyRow,
    publish: Callable[[InstanceSnapshot, Applied], None],
) -> bool:
    """A `sending` row found after a crash or an uncertain send.  True when it is settled
    (sent, found sent, or sent again); False to look again after the grace."""
    name = snapshot.instance_name
    echo = await rows.find_echo(deps.pool, name, reply)
    if echo is not None:
        async with deps.pool.acquire() as conn:
            async with conn.transaction():
                await rows.mark_sent(conn, name, reply.id, echo, deps.now())
        config.stats.count("sent")
        config.stats.count("resumed")
        log.info("auto-reply %s of %s had gone before the crash (%s)", reply.id, name, echo)
        return True
    started = reply.send_started_at or reply.decided_at
    if deps.now() < started + config.resend_grace_s:
        return False
    if not snapshot.state.is_connected or not snapshot.auto_reply or not reply.reply_text:
        await _fail(deps, config, name, reply.id, "interrupted send not repeated (not connected)")
        return True
    config.stats.count("resumed")
    log.warning(
        "auto-reply %s of %s: no echo %.0f s after an interrupted send; sending it again",
        reply.id,
        name,
        config.resend_grace_s,
    )
    await send(
        deps, config, snapshot, SendReply(reply.id, reply.chat_jid, reply.reply_text), publish
    )
    return True


# ---- the composer (a companion task of the actor) --------------------------------------------


class Composer:
    """Waits for each reply's due time, composes it outside the actor (the responder may take
    seconds), then hands it to the actor through its mailbox and waits until it is handled,
    so a reply is never worked on twice at once."""

    def __init__(
        self,
        deps: Any,
        config: AutoReplyConfig,
        name: str,
        mailbox: Mailbox,
        snapshot: Callable[[], InstanceSnapshot],
        call_timeout_s: float = 120.0,
    ) -> None:
        self.deps = deps
        self.config = config
        self.name = name
        self.mailbox = mailbox
        self.snapshot = snapshot
        self.call_timeout_s = call_timeout_s
        self._poke = trio.Event()

    def wake(self) -> None:
        self._poke.set()

    async def run(self) -> None:
        while True:
            self._poke = trio.Event()
            wait = await self._work_once()
            with trio.move_on_after(wait):
                await self._poke.wait()

    async def _work_once(self) -> float:
        """Handle what is due; the seconds until the next row is due (or a long nap)."""
        now = self.deps.now()
        pending = await rows.open_replies(self.deps.pool, self.name)
        nap = 3600.0
        for reply in pending:
            if reply.state == "sending":
                due = (reply.send_started_at or reply.decided_at) + self.config.resend_grace_s
                await self._hand(ResumeSend(reply.id))
                nap = min(nap, max(0.2, due - self.deps.now()))
                continue
            if reply.due_at > now:
                nap = min(nap, reply.due_at - now)
                continue
            await self._hand(await self._compose(reply))
            nap = 0.0  # look again at once: more may be due now
            break
        return nap

    async def _compose(self, reply: ReplyRow) -> ReplyReady:
        snapshot = self.snapshot()
        if not snapshot.auto_reply:
            return ReplyReady(reply.id, reply.chat_jid, None, None, reply.answers)
        if not snapshot.state.is_connected:
            # Not worth a provider call: the step settles it as failed.
            return ReplyReady(
                reply.id, reply.chat_jid, None, "WhatsApp is not connected", reply.answers
            )
        responder = self.config.responder
        if responder is None:
            return ReplyReady(
                reply.id, reply.chat_jid, None, "no AI responder is configured", reply.answers
            )
        history = await rows.context(
            self.deps.pool, self.name, reply.chat_jid, self.config.context_messages
        )
        turns = tuple(
            Turn("assistant" if h["from_me"] else "user", str(h["text"])) for h in history
        )
        contact = next((h["push_name"] for h in reversed(history) if not h["from_me"]), None)
        request = ReplyRequest(snapshot.auto_reply_prompt or "", turns, contact)
        try:
            text = await responder.reply(request)
        except ResponderError as exc:
            log.warning("auto-reply %s of %s: the responder failed: %s", reply.id, self.name, exc)
            return ReplyReady(reply.id, reply.chat_jid, None, str(exc), reply.answers)
        return ReplyReady(reply.id, reply.chat_jid, text, None, reply.answers)

    async def _hand(self, letter: ReplyReady | ResumeSend) -> None:
        while True:
            try:
                await self.mailbox.call(letter, self.call_timeout_s)
                return
            except MailboxFull:
                await trio.sleep(0.2)
            except CallTimeout:
                return  # handled later, or found again on the next round
            except Exception as exc:
                # The actor answered with an error (it logged it; a crash restarts it and
                # this task with it): the row is still open and found again next round.
                log.info("auto-reply hand-over to %s: %r", self.name, exc)
                return
