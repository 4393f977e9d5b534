"""Result types of :class:`~auzap_actors.evolution.client.EvolutionClient`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR object from ``/instance/connect``; every field but ``count`` may be missing."""

    base64: str | None  # data URL "data:image/png;base64,..."
    code: str | None  # raw QR payload
    pairing_code: str | None
    count: int


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """The polymorphic answer of ``/instance/connect`` and ``/instance/restart``.

    ``state`` is "open" when already connected, "connecting" when a QR object came
    back (possibly without a QR yet), or None when the shape was not recognised.
    """

    state: str | None
    qr: QrCode | None


@dataclass(frozen=True, slots=True)
class CreatedInstance:
    instance_name: str
    instance_id: str
    status: str
    token: str  # the ``hash`` field: this instance's own API key


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One Prisma ``Instance`` row of ``/instance/fetchInstances`` (fields we use)."""

    name: str
    id: str
    connection_status: str
    owner_jid: str | None
    profile_name: str | None
    number: str | None
    disconnection_reason_code: int | None
    disconnection_at: str | None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    events: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)
    by_events: bool = False
    base64: bool = False
    enabled: bool = True
