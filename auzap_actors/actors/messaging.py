"""The message half of an instance actor: store what a webhook (or our own send) says about
messages, contacts and chats, then push it to the right sockets.

Stored rows and the inbox row that carried them commit in one transaction; frames are
published only after the commit, so a browser never hears of a message that is not stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.payloads import Batch, parse_message
from ..core.webhook import WebhookError
from ..store import inbox
from ..store import messages as messages_store
from ..store.messages import Applied, BatchWriter
from .messages import NotConnected

if TYPE_CHECKING:
    from .instance_actor import InstanceActor


class Messaging:
    def __init__(self, actor: InstanceActor) -> None:
        self.actor = actor

    async def apply_batch(self, batch: Batch, *, inbox_row: int | None) -> Applied:
        """Store a batch (and mark its inbox row) in one transaction, then publish."""
        actor = self.actor
        async with actor.deps.pool.acquire() as conn:
            async with conn.transaction():
                applied = await BatchWriter(conn, actor.name).apply(batch)
                if inbox_row is not None:
                    await inbox.mark_done(conn, inbox_row, "applied")
        self.publish(applied)
        return applied

    def publish(self, applied: Applied) -> None:
        hub, snap = self.actor.deps.hub, self.actor.snapshot
        for message in applied.new_messages:
            hub.publish_user(snap.user_id, "message", message)
            hub.publish_org(snap.organization_id, "org.message", message)
        for change in applied.status_changes:
            hub.publish_user(snap.user_id, "message_status", change)
        for presence in applied.presences:
            hub.publish_user(snap.user_id, "presence", presence)

    async def send_text(self, to: str, text: str) -> dict[str, Any]:
        """Send through Evolution and store the message `pending`; NotConnected unless open."""
        actor = self.actor
        state = actor.snapshot.state
        if not state.is_connected:
            raise NotConnected(f"WhatsApp is {state.status.value}, not connected.")
        sent = await actor.deps.evolution.send_text(actor.name, to, text)
        record, aliases = parse_message(sent)
        if record is None:
            raise WebhookError("invalid_data", "Evolution answered sendText without a message.")
        applied = await self.apply_batch(Batch(aliases=aliases, messages=(record,)), inbox_row=None)
        if applied.new_messages:
            return applied.new_messages[0]
        # Already stored (the send.message webhook won the race): answer with the stored row.
        async with actor.deps.pool.acquire() as conn:
            view = await messages_store.find_message(conn, actor.name, record.wa_id, True)
        assert view is not None
        return view
