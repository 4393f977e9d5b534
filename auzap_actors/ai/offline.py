"""The demo's responder: no network, and every reply says it is automatic."""

from __future__ import annotations

from typing import Any

from .responder import ReplyRequest

AUTOMATIC = "[Automatic reply]"


class OfflineResponder:
    name = "offline"

    def __init__(self) -> None:
        self.replies = 0

    async def reply(self, request: ReplyRequest) -> str:
        self.replies += 1
        waiting: list[str] = []
        for turn in reversed(request.conversation):
            if turn.role != "user":
                break
            waiting.append(turn.text)
        count = len(waiting) or 1
        last = waiting[0] if waiting else ""
        quoted = f' ("{last[:80]}{"…" if len(last) > 80 else ""}")' if last else ""
        plural = "message" if count == 1 else f"{count} messages"
        return (
            f"{AUTOMATIC} Thanks for your {plural}{quoted}. This is an automatic answer from"
            " a demo assistant; a person will follow up soon."
        )

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "replies": self.replies, "breaker": None}

    async def aclose(self) -> None:
        return None
