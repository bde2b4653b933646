"""lcx's own HTTP serving: the websocket connection (and the HTTP/1.1 server)."""
