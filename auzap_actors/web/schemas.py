"""The answers' shapes (CONTRACT §3, §5, §6) as msgspec Structs, for `/openapi.json`.

The views themselves are built where their data lives (`core/views.py`, the store's views,
the facade); these Structs say what they are, and the schemathesis run (tests/test_openapi.py)
checks every live answer against them.  Objects are open (no `additionalProperties: false`):
CONTRACT lets fields be added, so clients must ignore the ones they do not know.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Status = Literal["disconnected", "connecting", "waiting_qr", "open", "needs_attention"]
HealthStatus = Literal["healthy", "unhealthy", "disconnected", "error"]
MessageStatus = Literal["pending", "server_ack", "delivered", "read", "played", "error", "deleted"]
Cursor = Annotated[
    str | None, msgspec.Meta(description="`before` of the next page; null at the end")
]


class ErrorDetail(msgspec.Struct):
    code: Annotated[str, msgspec.Meta(description="snake_case, stable", examples=["not_found"])]
    message: Annotated[str, msgspec.Meta(description="a sentence for humans")]


class ErrorBody(msgspec.Struct):
    """Every error, everywhere."""

    error: ErrorDetail


class HealthView(msgspec.Struct):
    status: HealthStatus
    consecutive_failures: int
    uptime_seconds: float | None
    last_check_at: datetime | None
    issues: list[str]


class QuietHoursView(msgspec.Struct):
    start: Annotated[str, msgspec.Meta(examples=["22:00"])]
    end: Annotated[str, msgspec.Meta(examples=["07:00"])]
    timezone: Annotated[str, msgspec.Meta(examples=["America/Sao_Paulo"])]


class InstanceView(msgspec.Struct):
    """The user's instance (CONTRACT §3)."""

    instance_name: Annotated[str, msgspec.Meta(examples=["user_6f1c…"])]
    user_id: uuid.UUID | None
    organization_id: uuid.UUID | None
    status: Status
    is_connected: bool
    phone_number: str | None
    qr_code: Annotated[str | None, msgspec.Meta(description="data:image/png;base64,…")]
    health: HealthView
    auto_reply: bool
    auto_reply_per_contact_hour: int
    auto_reply_per_instance_day: int
    auto_reply_quiet_hours: QuietHoursView | None
    auto_reply_human_pause_min: int | None
    auto_reply_groups: bool
    updated_at: datetime


class InstanceEnvelope(msgspec.Struct):
    instance: InstanceView


class InstanceListItem(InstanceView):
    label: Annotated[
        str | None, msgspec.Meta(description="the user's label; null for an unlabelled instance")
    ]


class InstanceList(msgspec.Struct):
    """The caller's instances, the primary (the one used without `?instance=`) first."""

    instances: list[InstanceListItem]
    max_instances: Annotated[
        int, msgspec.Meta(ge=1, description="AUZAP_MAX_INSTANCES_PER_USER of this service")
    ]


class MessageView(msgspec.Struct):
    id: uuid.UUID
    conversation_id: uuid.UUID
    wa_message_id: str
    from_me: bool
    remote_jid: str
    sender_jid: str | None
    push_name: str | None
    type: Annotated[str, msgspec.Meta(description="`text`, `image`, … (Evolution's messageType)")]
    text: str | None
    status: MessageStatus
    timestamp: datetime
    auto_reply: bool


class MessageEnvelope(msgspec.Struct):
    message: MessageView


class MessagePage(msgspec.Struct):
    messages: list[MessageView]
    next: Cursor


class ContactView(msgspec.Struct):
    id: str
    remote_jid: str
    phone_number: str | None
    push_name: str | None
    profile_pic_url: str | None


class ConversationView(msgspec.Struct):
    id: uuid.UUID
    remote_jid: Annotated[str, msgspec.Meta(description="the chat's canonical jid")]
    is_group: bool
    title: str | None
    contact: ContactView | None
    last_message_at: datetime | None
    last_message: MessageView | None
    unread_count: int


class ConversationPage(msgspec.Struct):
    conversations: list[ConversationView]
    next: Cursor


# ---- webhooks ------------------------------------------------------------------------------


class WebhookEnvelope(msgspec.Struct):
    """What Evolution posts.  Free-form by design: every event is accepted (unknown ones are
    stored as unhandled), any other key is allowed; only `event` (or the URL's slug) and
    `instance` must name something."""

    event: Annotated[
        str,
        msgspec.Meta(
            description="`messages.upsert`, `connection.update`, … (`MESSAGES_UPSERT` on the"
            " legacy route); optional on the by-events route, where the URL names it",
            examples=["connection.update"],
        ),
    ]
    instance: Annotated[
        str | dict[str, Any],
        msgspec.Meta(
            description='the instance name; the legacy route also takes `{"instanceName": …}`'
        ),
    ]
    data: (
        Annotated[Any, msgspec.Meta(description="the event's payload, as Evolution sends it")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    date_time: (
        Annotated[str, msgspec.Meta(description="part of the duplicate key")] | msgspec.UnsetType
    ) = msgspec.UNSET
    apikey: (
        Annotated[str, msgspec.Meta(description="removed before anything is stored")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class WebhookAck(msgspec.Struct):
    accepted: bool
    duplicate: bool


class WebhookDryRun(msgspec.Struct):
    accepted: Literal[False]
    dry_run: Literal[True]
    event: str
    instance: str
    dedup_key: str | None
    would: Annotated[str, msgspec.Meta(description="what applying the event would do")]


# ---- operators ---------------------------------------------------------------------------


class Mailbox(msgspec.Struct):
    size: int
    capacity: int
    peak: int


class ActorEntry(msgspec.Struct):
    """One actor as `/admin/tree` lists it."""

    instance_name: str
    actor: Annotated[str, msgspec.Meta(description="`running`, `waiting_for_database`, …")]
    status: Status | None
    mailbox: Mailbox
    restarts: int
    parkings: int
    revive_at: float | None
    last_error: str | None
    health: HealthView | None
    owner_node: str
    lease_epoch: int | None


class MinuteCounts(msgspec.Struct):
    minute: Annotated[datetime, msgspec.Meta(description="the minute's start, UTC")]
    accepted: Annotated[int, msgspec.Meta(description="webhooks answered 200, duplicates too")]
    duplicates: Annotated[int, msgspec.Meta(description="of those, already stored")]
    rejected: Annotated[int, msgspec.Meta(description="webhooks refused")]


class InboxState(msgspec.Struct):
    """The webhook inbox of the whole service, as the dashboard shows it."""

    lag_seconds: Annotated[
        float | None,
        msgspec.Meta(
            description="age of the oldest stored event not applied yet (0 when none);"
            " null while the database does not answer"
        ),
    ]
    pending: Annotated[
        int | None,
        msgspec.Meta(description="stored events not applied yet, counted up to `pending_cap`"),
    ]
    pending_capped: Annotated[bool, msgspec.Meta(description="true: at least `pending_cap`")]
    pending_cap: int
    events_per_minute: Annotated[
        list[MinuteCounts],
        msgspec.Meta(description="the last 30 minutes, oldest first, the current one last"),
    ]


class AdminTree(msgspec.Struct):
    node: dict[str, Any]
    supervisor: dict[str, Any]
    actors: list[ActorEntry]
    inbox: InboxState


class Readiness(msgspec.Struct):
    status: Literal["ready", "unavailable"]
    reasons: list[str]
    evolution: dict[str, Any]
    actors: dict[str, int]


class Liveness(msgspec.Struct):
    status: Literal["ok"]


class DemoLogin(msgspec.Struct):
    token: str
    user_id: uuid.UUID


class SettingsView(msgspec.Struct):
    """What `PATCH /api/whatsapp/settings` stored (the prompt is not in InstanceView)."""

    auto_reply: bool
    auto_reply_prompt: str | None
    auto_reply_per_contact_hour: int
    auto_reply_per_instance_day: int
    auto_reply_quiet_hours: QuietHoursView | None
    auto_reply_human_pause_min: int | None
    auto_reply_groups: bool


class DemoInboundAnswer(msgspec.Struct):
    delivered: bool
    instance_name: str
    wa_message_id: str | None


class DemoScan(msgspec.Struct):
    scanned: bool
    instance_name: str
