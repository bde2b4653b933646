"""The one error tree of lcx.

Every error lcx raises on purpose derives from :class:`LcxError`. Adapters map the
exceptions of the libraries they wrap to the most specific class here
(``raise ... from exc``); the HTTP layer turns :class:`ApiError` into the error envelope
of API.md section 1, and anything else into a 500 ``internal`` with a trace id.

::

    LcxError
    ├── ConfigError                  bad configuration; the message names the key
    ├── ApiError                     carries an HTTP status and a machine code
    │   ├── InvalidRequest           400 invalid_request
    │   ├── Unauthorized             401 unauthorized
    │   ├── Forbidden                403 forbidden
    │   ├── NotFound                 404 not_found
    │   ├── MethodNotAllowed         405 method_not_allowed
    │   ├── Conflict                 409 conflict
    │   ├── PayloadTooLarge          413 payload_too_large
    │   ├── UnsupportedMediaType     415 unsupported_media_type
    │   ├── Unprocessable            422 unprocessable
    │   ├── RateLimited              429 rate_limited
    │   └── Unavailable              503 unavailable
    ├── ActorError                   the actor runtime refused or failed a message
    │   ├── MailboxFull              ``tell`` found the mailbox full
    │   ├── ActorStopped             the actor is stopped (or stopped before answering)
    │   │   └── MailboxClosed        the message was never read: safe to resend
    │   ├── AskTimeout               no reply within the ask's timeout
    │   └── RestartIntensityExceeded a supervisor gave up and fails to its parent
    ├── StoreError                   the store failed
    │   ├── StoreUnavailable         cannot reach the database
    │   ├── IntegrityConflict        a uniqueness rule refused a write
    │   ├── StaleState               a write based on a row another writer changed
    │   └── MigrationError           a migration could not be applied
    ├── FencedOut                    a stale leader's write was refused by its fencing term
    └── EdgeCallFailed               a channel or provider call failed (with its retry class)

An :class:`LcxError` raised by an actor while answering an ``ask`` is an expected
outcome: the caller gets it and the actor carries on. Any other exception is a bug: the
caller gets it too, and the actor crashes and is restarted by its supervisor.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LcxError(Exception):
    """Base of every error lcx raises on purpose."""


class ConfigError(LcxError):
    """The configuration is invalid; the message names the offending key."""


class ApiError(LcxError):
    """An error with an HTTP status and a machine code, rendered as the error envelope."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class InvalidRequest(ApiError):
    """Malformed JSON, wrong types or missing fields (``details.fields`` names them)."""

    status = 400
    code = "invalid_request"


class Unauthorized(ApiError):
    """Missing, malformed, expired or badly signed credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """Valid credentials, but the wrong scope or another organization's data."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """No such resource (or one the caller may not know exists)."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    """The path exists but not with this method."""

    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    """The current state does not allow the operation."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    """The body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class HeadersTooLarge(ApiError):
    """The request's header fields are larger than the server takes."""

    status = 431
    code = "request_header_fields_too_large"


class UnsupportedMediaType(ApiError):
    """The body has a content type this endpoint does not take."""

    status = 415
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    """Well formed but refused by a rule (``details.reason`` says which)."""

    status = 422
    code = "unprocessable"


class RateLimited(ApiError):
    """Over a limit; the response carries ``Retry-After``."""

    status = 429
    code = "rate_limited"


class Unavailable(ApiError):
    """Not ready, draining, or a dependency is down."""

    status = 503
    code = "unavailable"


class ActorError(LcxError):
    """The actor runtime refused or failed to deliver a message."""


class MailboxFull(ActorError):
    """``tell`` found the actor's mailbox at capacity; nothing was enqueued."""


class ActorStopped(ActorError):
    """The actor is stopped, or stopped before it answered."""


class MailboxClosed(ActorStopped):
    """The actor stopped before reading the message (or it was never enqueued); resending
    it is safe."""


class AskTimeout(ActorError):
    """The actor did not answer an ``ask`` within its timeout."""


class RestartIntensityExceeded(ActorError):
    """A supervisor saw more restarts than its intensity allows and gave up."""


class StoreError(LcxError):
    """The store failed to read or write."""


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class IntegrityConflict(StoreError):
    """A uniqueness or foreign-key rule refused a write."""


class StaleState(StoreError):
    """A write based on a state that another writer changed since it was read (the same
    actor active on two instances for a moment, e.g. a paused owner that woke up): refused,
    so the writer reads the state again."""


class MigrationError(StoreError):
    """A schema migration could not be applied."""


class FencedOut(LcxError):
    """A write on behalf of a leadership term older than one that already acted."""


class EdgeCallFailed(LcxError):
    """An edge call failed. ``retry``: worth trying again (429, 5xx, network) after
    ``retry_after`` seconds when the edge said so; ``auth``: credentials were refused
    (401/403: counted as an alert)."""

    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None,
                 auth: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.auth = auth
        self.status = status
