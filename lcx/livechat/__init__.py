"""The livechat core: the rules of conversations, queues and agents' chat slots.

Pure: no store, no bus, no clock, no Trio, no adapters. The actors load a state, ask these
rules what a command does (a :class:`~lcx.livechat.decision.Decision`), commit it and carry
it out. ``tests/unit/test_import_layers.py`` keeps it that way; the shells are tested
with in-memory ports in ``tests/unit/test_*_shell.py``.
"""
