"""lcx's own HTTP/1.1 and websocket server for ASGI apps, on Trio.

:mod:`lcx.server.serve` accepts connections on a listening socket and runs the ASGI
lifespan (:mod:`lcx.server.lifespan`); :mod:`lcx.server.http1` serves one connection,
parsing requests with httptools and running the app inline for each in turn;
:mod:`lcx.server.wire` encodes response heads; :mod:`lcx.server.websocket` takes over a
connection whose request is a websocket upgrade (handshake in
:mod:`lcx.server.ws_handshake`, frames in :mod:`lcx.server.ws_connection`).
:func:`lcx.api.http_server.serve_http` is the entry point the rest of lcx uses.
"""
