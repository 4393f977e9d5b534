"""A local stand-in for an OpenAI-compatible provider, served over real HTTP by hypercorn:
`POST /v1/chat/completions` answers in the chat-completions shape (or fails as told), and
every request body it received is kept for the test to read."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import hypercorn.trio
import trio
from hypercorn.config import Config
from quart import Response, jsonify, request
from quart_trio import QuartTrio

DEEP_JSON = '{"choices": ' + "[" * 5000 + "]" * 5000 + "}"

Mode = Literal["ok", "error", "slow", "refuse", "deep"]


@dataclass
class FakeOpenAI:
    mode: Mode = "ok"
    slow_s: float = 30.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    url: str = ""

    def reply_for(self, body: dict[str, Any]) -> str:
        """The reply names how many of the contact's last messages it answers, and the last
        one, so a test can tell which request a sent text came from."""
        messages = body.get("messages") or []
        waiting = []
        for message in reversed(messages):
            if message.get("role") != "user":
                break
            waiting.append(message.get("content"))
        return f"Reply to {len(waiting)} message(s), last: {waiting[0] if waiting else ''}"

    def user_texts(self, index: int = -1) -> list[str]:
        return [m["content"] for m in self.requests[index]["messages"] if m["role"] == "user"]


def _app(fake: FakeOpenAI) -> QuartTrio:
    app = QuartTrio("fake_openai")

    @app.post("/v1/chat/completions")
    async def completions() -> Response | tuple[Response, int]:
        body = await request.get_json(force=True)
        fake.requests.append(body)
        fake.auth_headers.append(request.headers.get("Authorization"))
        if fake.mode == "error":
            return jsonify({"error": {"message": "boom", "type": "server_error"}}), 500
        if fake.mode == "refuse":
            return jsonify({"error": {"message": "bad model", "type": "invalid_request"}}), 400
        if fake.mode == "slow":
            await trio.sleep(fake.slow_s)
        if fake.mode == "deep":  # valid JSON nested deeper than Python's parser follows
            return Response(DEEP_JSON, content_type="application/json")
        return jsonify(
            {
                "id": f"chatcmpl-{len(fake.requests)}",
                "object": "chat.completion",
                "created": 1_795_000_000,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": fake.reply_for(body)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    return app


async def serve_fake_openai(
    fake: FakeOpenAI, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `fake` on a free port of 127.0.0.1; started with its base URL (`.../v1`)."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 0.2
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(hypercorn.trio.serve, _app(fake), config)
        fake.url = f"http://127.0.0.1:{binds[0].rsplit(':', 1)[1]}/v1"
        task_status.started(fake.url)
