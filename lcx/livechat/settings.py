"""An organization's livechat settings: the rules' parameters (shape and defaults)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class LivechatSettings(msgspec.Struct, rename="camel", kw_only=True, frozen=True,
                       forbid_unknown_fields=True):
    """How an organization's livechat behaves; the defaults apply until it is changed."""

    routing: Literal["broadcast", "auto"] = "broadcast"
    max_concurrent_chats: Annotated[int, Meta(ge=1, le=1000)] = 3
    request_timeout_seconds: Annotated[int, Meta(ge=1, le=7 * 86_400)] = 120
    inactivity_timeout_seconds: Annotated[int, Meta(ge=1, le=30 * 86_400)] = 900
    reject_when_unavailable: bool = False
    end_on_last_leave: bool = True
    retention_days: Annotated[int, Meta(ge=1, le=36_500)] = 365
    greeting: Annotated[str, Meta(max_length=2000)] | None = None


DEFAULT_SETTINGS = LivechatSettings()
