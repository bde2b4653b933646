"""The agent and supervisor console: static files in ``static/``, served by
:mod:`lcx.api.console` under ``/console/``."""
