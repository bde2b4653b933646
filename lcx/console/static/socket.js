// The agent websocket (API.md section 5): connect, answer refs, reconnect with backoff.
//
// After every (re)connection the owner gets "open" and sends RESUME for the conversations
// it shows; frames are handed to onFrame. A refused token (close code 4401) stops the
// reconnecting and reports "unauthorized".

const CLOSE_UNAUTHORIZED = 4401;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
const ASK_TIMEOUT_MS = 15000;

export class AgentSocket {
  constructor(token, { onFrame, onState }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.refs = 0;
    this.pending = new Map();
    this.stopped = false;
    this.timer = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws?token=${encodeURIComponent(this.token)}`;
  }

  connect() {
    this.stopped = false;
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("message", (event) => this.received(event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event));
  }

  received(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "event" && frame.event === "AUTHORIZATION_GRANTED") {
      this.attempt = 0;
      this.onState("connected", frame.data);
    }
    const waiter = frame.ref != null ? this.pending.get(frame.ref) : undefined;
    if (waiter && (frame.type === "ack" || (frame.type === "event" && frame.event === "ERROR"))) {
      this.pending.delete(frame.ref);
      clearTimeout(waiter.timer);
      if (frame.type === "ack") waiter.resolve(frame.data);
      else waiter.reject(Object.assign(new Error(frame.data.message), { code: frame.data.code }));
    }
    this.onFrame(frame);
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    for (const [ref, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(Object.assign(new Error("connection lost"), { code: "unavailable" }));
      this.pending.delete(ref);
    }
    if (this.stopped) return;
    if (event.code === CLOSE_UNAUTHORIZED) {
      this.stopped = true;
      this.onState("unauthorized", { reason: event.reason });
      return;
    }
    this.attempt += 1;
    this.onState("reconnecting");
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (this.attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Whether frames can be sent now. */
  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a frame without waiting for its answer. */
  send(frame) {
    if (this.open) this.ws.send(JSON.stringify(frame));
  }

  /** Send a frame with a ref; resolves with the ack's data, rejects on ERROR. */
  ask(frame) {
    if (!this.open) {
      return Promise.reject(Object.assign(new Error("not connected"), { code: "unavailable" }));
    }
    const ref = `c${++this.refs}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(Object.assign(new Error("no answer"), { code: "timeout" }));
      }, ASK_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /** An event frame, asked. */
  event(name, data) {
    return this.ask({ type: "event", event: name, data });
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "signed out");
  }
}
