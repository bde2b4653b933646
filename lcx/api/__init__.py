"""The HTTP edge of lcx: the quart-trio app (:mod:`lcx.api.http_app`), its error envelope
(:mod:`lcx.api.errors`), JSON bodies (:mod:`lcx.api.bodies`), the operations routes
(:mod:`lcx.api.ops`) and the server entry point (:mod:`lcx.api.http_server`, serving with
:mod:`lcx.server`)."""
