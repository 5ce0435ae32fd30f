"""HTTP-facing errors: each carries its status code, a message that names the field, and a metric reason.

The batcher raises its own HTTP-agnostic exceptions (QueueFull, DeadlineExceeded, BatcherClosed);
`as_serve_error` maps them here so that the status codes of DESIGN.md live in one place.
"""

from __future__ import annotations

from inferopt.serve.batcher import BatcherClosed, DeadlineExceeded, QueueFull, WaitTooLong
from inferopt.sources.features import EntityNotFound, FeaturesUnavailable
from inferopt.tasks.base import InvalidInput


class ServeError(Exception):
    status = 500
    reason = "internal"  # label of inferopt_rejected_total
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, object]:
        # OpenAI's error shape, so that OpenAI client libraries surface the message.
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.status}}

    def plain_body(self) -> dict[str, object]:
        """KServe v1's and the Open Inference Protocol's error shape: {"error": message}."""
        return {"error": self.message}


class MalformedBody(ServeError):
    status, reason, error_type = 400, "malformed", "invalid_request_error"


class PayloadTooLarge(ServeError):
    status, reason, error_type = 413, "too_large", "invalid_request_error"


class ModelNotFound(ServeError):
    status, reason, error_type = 404, "not_found", "invalid_request_error"


class EntityMissing(ServeError):
    status, reason, error_type = 404, "unknown_entity", "invalid_request_error"


class DependencyDown(ServeError):
    """A dependency the request needs (the feature store) is down, and nothing cached may stand in."""

    status, reason, error_type = 503, "dependency", "unavailable"

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}


class JobNotFound(ServeError):
    status, reason, error_type = 404, "not_found", "invalid_request_error"


class InvalidField(ServeError):
    status, reason, error_type = 422, "invalid", "invalid_request_error"


class Overloaded(ServeError):
    status, reason, error_type = 429, "queue_full", "overloaded"

    def __init__(self, message: str, *, retry_after_s: int, reason: str = "queue_full") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class NotReady(ServeError):
    status, reason, error_type = 503, "not_ready", "unavailable"

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}


class ShuttingDown(ServeError):
    status, reason, error_type = 503, "shutting_down", "unavailable"


class JobsUnavailable(ServeError):
    """Jobs are off (no --jobs), or their Redis store does not answer: either way, nothing durable to take them."""

    status, reason, error_type = 503, "jobs_unavailable", "unavailable"


class DeadlinePassed(ServeError):
    status, reason, error_type = 504, "deadline", "timeout"


class InternalError(ServeError):
    """The message names only the request id: the cause goes to the log, never to the client."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"internal error; the server log has the details under request id {request_id}")


def as_serve_error(exc: BaseException, request_id: str) -> ServeError:
    if isinstance(exc, ServeError):
        return exc
    if isinstance(exc, InvalidInput):
        return InvalidField(exc.message, param=exc.field)
    if isinstance(exc, EntityNotFound):
        return EntityMissing(exc.message, param="entity_id")
    if isinstance(exc, FeaturesUnavailable):
        return DependencyDown(exc.message, param=exc.dependency)
    if isinstance(exc, WaitTooLong):
        return Overloaded(
            f"the queue would hold this request about {exc.expected_s * 1000:.0f} ms, more than the "
            f"{exc.limit_s * 1000:.0f} ms its deadline (or --max-queue-ms) leaves; retry after {exc.retry_after_s} s",
            retry_after_s=exc.retry_after_s,
            reason="predicted_wait",
        )
    if isinstance(exc, QueueFull):
        return Overloaded(
            f"the queue is full ({exc.depth} items waiting); retry after {exc.retry_after_s} s",
            retry_after_s=exc.retry_after_s,
        )
    if isinstance(exc, DeadlineExceeded):
        return DeadlinePassed("the request deadline passed before its results were ready")
    if isinstance(exc, BatcherClosed):
        return ShuttingDown("the server is shutting down; send the request to another replica")
    return InternalError(request_id)
