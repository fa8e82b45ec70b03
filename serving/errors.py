"""The one error type of the request path: a gRPC status code and TensorFlow Serving's message."""
from __future__ import annotations

import grpc

MAX_MESSAGE = 1024  # grpc_status_util.cc cuts longer messages


class ServingError(Exception):
    """A request failed with `code`; `message` is what TensorFlow Serving would say."""

    def __init__(self, code: grpc.StatusCode, message: str):
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "...TRUNCATED"
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# TensorFlow's error codes are the gRPC codes, number for number.
CODES = {code.value[0]: code for code in grpc.StatusCode}

# http_rest_api_handler: status codes of REST replies, by gRPC code.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def describe(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message of any failure: ours, TensorFlow's, or an unexpected one."""
    if isinstance(error, ServingError):
        return error.code, error.message
    code = CODES.get(getattr(error, "error_code", None))  # tf.errors.OpError
    if code is not None:
        return code, error.message
    return grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"

