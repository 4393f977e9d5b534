"""One error shape everywhere: {"error": {"code": "<snake_case>", "message": "<sentence>"}}."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    response: Response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ApiError(Exception):
    """Raised by handlers; rendered by the app's error handler."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.headers)


def json_body_error(detail: Any) -> ApiError:
    return ApiError(400, "invalid_json", f"The body is not valid JSON: {detail}")
