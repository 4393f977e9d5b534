"""Builds the quart-trio app of the simulator: REST routes, control API, faults."""

from __future__ import annotations

import random

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import MethodNotAllowed, NotFound

from .control import register_control
from .core import ControlError, Simulator
from .model import SimHTTPError
from .rest import json_response, register_rest

# What a reverse proxy answers when Evolution behind it is dead: HTML, not JSON.
_DOWN_BODY = "<html><body><h1>503 Service Unavailable</h1></body></html>"


def _route_key() -> tuple[str, str | None]:
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    view_args = request.view_args or {}
    instance = view_args.get("instance")
    return f"{request.method} {rule.replace('<instance>', '{instance}')}", instance


def create_simulator_app(sim: Simulator) -> QuartTrio:
    app = QuartTrio(__name__)
    # Tests and demos stop the server by cancellation; no 5 s wait for app tasks.
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    register_rest(app, sim)
    register_control(app, sim)

    @app.before_serving
    async def start_simulator() -> None:
        # serve_simulator runs the simulator itself; any other way of serving the app
        # (hypercorn's CLI, run_task, test_app) gets it started in the app's nursery.
        if not sim.running:
            await app.nursery.start(sim.run)

    @app.before_request
    async def count_and_inject_faults() -> Response | None:
        if request.path.startswith("/_sim"):
            return None
        route, instance = _route_key()
        # Counted before faults: a request answered with an injected fault still
        # reached the server, which is what a caller's retry budget is judged by.
        sim.count_request(route, instance)
        g.sim_route = route
        faults = sim.faults
        if faults.mode == "slow" and faults.latency_ms > 0:
            await trio.sleep(faults.latency_ms / 1000)
        if faults.mode == "down" or (
            faults.mode == "flaky" and random.random() < faults.error_rate
        ):
            return Response(_DOWN_BODY, status=503, content_type="text/html")
        if faults.mode == "error":
            return json_response(SimHTTPError(500, ["Simulated internal server error"]).body(), 500)
        return None

    @app.teardown_request
    async def request_finished(_: BaseException | None) -> None:
        route = getattr(g, "sim_route", None)
        if route is not None:
            sim.request_done(route)

    @app.errorhandler(SimHTTPError)
    async def evolution_error(error: SimHTTPError) -> Response:
        return json_response(error.body(), error.status)

    @app.errorhandler(ControlError)
    async def control_error(error: ControlError) -> Response:
        return json_response({"error": error.message}, error.status)

    @app.errorhandler(NotFound)
    @app.errorhandler(MethodNotAllowed)
    async def unknown_route(_: Exception) -> Response:
        # Express answers any unmatched method+path with 404 "Cannot <METHOD> <path>".
        return json_response(
            SimHTTPError(404, [f"Cannot {request.method} {request.path}"]).body(), 404
        )

    return app
