"""Time-sortable identifiers (UUIDv7, RFC 9562)."""

from __future__ import annotations

import os
import struct
import time

_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1
_SPARE_COUNT = 512
"""Random 64-bit words read from the OS at once (one ``getrandom`` per 512 ids)."""
_unpack_spare = struct.Struct(f">{_SPARE_COUNT}Q").unpack
_spare: list[int] = []
"""Random words not used yet. ``list.pop`` is atomic, so threads never share one; a
forked child drops the parent's (it would repeat them)."""
os.register_at_fork(after_in_child=_spare.clear)


def _random_word() -> int:
    """64 bits from ``os.urandom``, read ahead in batches of :data:`_SPARE_COUNT`."""
    while True:
        try:
            return _spare.pop()
        except IndexError:
            _spare.extend(_unpack_spare(os.urandom(8 * _SPARE_COUNT)))


def new_id() -> str:
    """Return a fresh UUIDv7 string, e.g. ``0193a6b2-3c4d-7e5f-8a9b-0c1d2e3f4a5b``.

    The first 48 bits are the Unix time in milliseconds and the next 12 bits the fraction
    of that millisecond (RFC 9562 method 3), so ids sort by creation time to well under a
    millisecond; the last 62 bits come from ``os.urandom`` (read 512 words at a time).
    """
    ms, sub_ms_ns = divmod(time.time_ns(), 1_000_000)
    rand_a = sub_ms_ns * 4096 // 1_000_000
    rand_b = _random_word() & _RAND_B_MASK
    value = (ms & _MS_MASK) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
