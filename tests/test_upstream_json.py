"""Answers from the services we call (Evolution, the AI provider) that are valid JSON nested
deeper than Python's parser follows: a clear error of that service, like any answer that is
not what was asked, never a RecursionError escaping into the actor or the composer."""

from __future__ import annotations

import hypercorn.trio
import pytest
import trio
from hypercorn.config import Config
from quart import Response
from quart_trio import QuartTrio

from auzap_actors.ai import OpenAIResponder, ReplyRequest, ResponderError, Turn
from auzap_actors.evolution import EvolutionClient, EvolutionServerError
from auzap_actors.evolution.retry import RetryPolicy

from .fake_openai import DEEP_JSON, FakeOpenAI, serve_fake_openai


async def test_an_evolution_answer_nested_too_deep_is_a_server_error() -> None:
    app = QuartTrio("deep_evolution")

    @app.route("/<path:anything>", methods=["GET", "POST"])
    async def deep(anything: str) -> Response:
        return Response(DEEP_JSON, content_type="application/json")

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(hypercorn.trio.serve, app, config)
        url = f"http://127.0.0.1:{binds[0].rsplit(':', 1)[1]}"
        async with EvolutionClient(url, "key", retry=RetryPolicy(attempts=1)) as client:
            with pytest.raises(EvolutionServerError, match="not JSON"):
                await client.connection_state("user_deep")
        nursery.cancel_scope.cancel()


async def test_an_ai_answer_nested_too_deep_is_no_reply() -> None:
    fake = FakeOpenAI(mode="deep")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_fake_openai, fake)
        responder = OpenAIResponder(url, "sk-test", "gpt-test", attempts=1)
        request = ReplyRequest("", (Turn("user", "Oi"),))
        with pytest.raises(ResponderError, match="no reply"):
            await responder.reply(request)
        assert len(fake.requests) == 1
        await responder.aclose()
        nursery.cancel_scope.cancel()
