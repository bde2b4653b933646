"""lcx.ids: UUIDv7 text, time order, and random words read ahead but never repeated."""

from __future__ import annotations

import os
import re
import threading
import uuid

import pytest

from lcx import ids
from lcx.ids import new_id

_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_an_id_is_a_version_7_uuid_of_rfc_9562() -> None:
    value = new_id()
    assert _UUID_TEXT.fullmatch(value)
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_sort_by_creation_and_never_repeat_across_refills() -> None:
    made = [new_id() for _ in range(5 * ids._SPARE_COUNT + 7)]  # several batches
    assert len(set(made)) == len(made)
    assert [value[:14] for value in made] == sorted(value[:14] for value in made)


def test_threads_never_share_a_random_word() -> None:
    ids._spare.clear()
    seen: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_id() for _ in range(3 * ids._SPARE_COUNT))

    threads = [threading.Thread(target=make, args=(into,)) for into in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for into in seen for value in into]
    assert len({value[19:] for value in every}) == len(every)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_words() -> None:
    new_id()  # the parent holds spare words now
    assert ids._spare
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it kept the parent's words, and its next id
        os.close(reader)
        os.write(writer, f"{len(ids._spare)} {new_id()}".encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        kept, child_id = pipe.read().split()
    os.waitpid(pid, 0)
    assert kept == "0"
    assert child_id[19:] != new_id()[19:]
