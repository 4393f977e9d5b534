"""Messages through the simulator: ``sendText`` out, ``/_sim/.../inbound`` in.

Payload shapes follow facts §2.11 and §4.3-§4.7.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from .core import ControlError, Simulator
from .model import (
    Instance,
    SimHTTPError,
    device_from_id,
    new_inbound_id,
    new_message_id,
    new_row_id,
    normalize_number,
    now_iso,
)


def _record(
    inst: Instance,
    *,
    remote_jid: str,
    message_id: str,
    from_me: bool,
    push_name: str,
    status: str,
    text: str,
) -> dict[str, Any]:
    return {
        "key": {"remoteJid": remote_jid, "fromMe": from_me, "id": message_id},
        "pushName": push_name,
        "status": status,
        "message": {"conversation": text},
        "contextInfo": None,
        "messageType": "conversation",
        "messageTimestamp": int(time.time()),
        "instanceId": inst.id,
        "source": device_from_id(message_id),
    }


def send_text(sim: Simulator, inst: Instance, number: str, text: str) -> dict[str, Any]:
    """``POST /message/sendText``: the prepared record, ``send.message``, then acks."""
    if inst.state != "open":
        # The real server fails inside its onWhatsApp check with an unconfirmed
        # status; the simulator answers a clear 400 instead.
        raise SimHTTPError(400, [f'The "{inst.name}" instance is not connected'])
    jid = normalize_number(number)
    user = jid.split("@", 1)[0]
    if jid.endswith("@s.whatsapp.net") and not (user.isdigit() and 8 <= len(user) <= 15):
        # What the real onWhatsApp check answers for a number that is not on WhatsApp.
        raise SimHTTPError(400, [{"jid": jid, "exists": False, "number": number}])
    record = _record(
        inst,
        remote_jid=jid,
        message_id=new_message_id(),
        from_me=True,
        push_name="Você",  # Baileys' fallback for own messages
        status="PENDING",
        text=text,
    )
    sim.emit(inst, "send.message", record)
    sim.sent.append(
        {
            "instance": inst.name,
            "number": number,
            "remote_jid": jid,
            "text": text,
            "id": record["key"]["id"],
            "at": now_iso(),
        }
    )
    sim.spawn_for(inst, _acks, sim, record)
    return record


def send_presence(
    sim: Simulator, inst: Instance, number: str, presence: str, delay_ms: int
) -> dict[str, Any]:
    """``POST /chat/sendPresence``: a per-chat typing indicator (facts §2.9).  The real server
    shows it for ``delay`` ms before answering; the simulator records it and answers at once."""
    if inst.state != "open":
        raise SimHTTPError(400, [f'The "{inst.name}" instance is not connected'])
    jid = normalize_number(number)
    sim.presences.append(
        {
            "instance": inst.name,
            "number": number,
            "remote_jid": jid,
            "presence": presence,
            "delay": delay_ms,
            "at": now_iso(),
        }
    )
    return {"presence": presence}


async def _acks(inst: Instance, sim: Simulator, record: dict[str, Any]) -> None:
    row_id = new_row_id()
    for status in ("SERVER_ACK", "DELIVERY_ACK"):
        await trio.sleep(sim.config.ack_delay_s)
        sim.emit(
            inst,
            "messages.update",
            {
                "keyId": record["key"]["id"],
                "remoteJid": record["key"]["remoteJid"],
                "fromMe": True,
                "status": status,
                "instanceId": inst.id,
                "messageId": row_id,
            },
        )


def inbound(sim: Simulator, inst: Instance, sender: str, text: str, push_name: str | None) -> str:
    """A message from ``sender`` reaches the phone: upsert + contact + chat events."""
    if inst.state != "open":
        raise ControlError(409, f'instance "{inst.name}" is not open (state {inst.state})')
    jid = normalize_number(sender)
    name = push_name or jid.split("@", 1)[0]  # Evolution falls back to the number
    message_id = new_inbound_id()
    record = _record(
        inst,
        remote_jid=jid,
        message_id=message_id,
        from_me=False,
        push_name=name,
        status="DELIVERY_ACK",
        text=text,
    )
    sim.emit(inst, "messages.upsert", record)
    # From a message the contact event carries a single object, chats an array.
    sim.emit(
        inst,
        "contacts.upsert",
        {
            "remoteJid": jid,
            "pushName": name,
            "profilePicUrl": None,
            "instanceId": inst.id,
        },
    )
    sim.emit(
        inst,
        "chats.upsert",
        [
            {"remoteJid": jid, "instanceId": inst.id, "name": name, "unreadMessages": 1},
        ],
    )
    return message_id
