"""API errors with the status codes and fixed messages of the Toxiproxy server."""

from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """An error the API reports as ``{"error": message, "status": status}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def bad_body(cls, detail: str) -> ApiError:
        """400 ``bad request body: …``."""
        return cls(400, f"bad request body: {detail}")

    @classmethod
    def missing(cls, field: str) -> ApiError:
        """400 ``missing required field: …``."""
        return cls(400, f"missing required field: {field}")


PROXY_NOT_FOUND = (404, "proxy not found")
PROXY_EXISTS = (409, "proxy already exists")
INVALID_STREAM = (400, "stream was invalid, can be either upstream or downstream")
INVALID_TOXIC_TYPE = (400, "invalid toxic type")
TOXIC_EXISTS = (409, "toxic already exists")
TOXIC_NOT_FOUND = (404, "toxic not found")
