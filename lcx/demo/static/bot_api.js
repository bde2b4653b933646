// The bot API (docs/api.md section 3) and the demo's event inbox, with a bot token.

/** An error answer of lcx: status, code and message of the error envelope. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class BotApi {
  constructor(token, tenantId) {
    this.token = token;
    this.tenantId = tenantId;
  }

  async call(method, path, body, signal) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let code = "error";
      let message = response.statusText;
      try {
        const envelope = await response.json();
        code = envelope.error.code;
        message = envelope.error.message;
      } catch {
        // not an lcx error envelope: keep the status text
      }
      throw new ApiError(response.status, code, message);
    }
    return response.status === 204 ? null : response.json();
  }

  /** POST /requests: hand the customer over to the tenant's agents. */
  createRequest(subHandle, name, opening) {
    return this.call("POST", "/requests", {
      tenantId: this.tenantId,
      subHandle,
      subscriber: { name, locale: navigator.language || "en" },
      context: {
        transcript: [{ author: "user", text: opening, at: new Date().toISOString() }],
        metadata: { source: "lcx customer simulator" },
      },
    });
  }

  /** POST /messages: a message from the customer (its id makes a resend harmless). */
  sendMessage(subHandle, text) {
    return this.call("POST", "/messages", {
      tenantId: this.tenantId, subHandle, id: crypto.randomUUID(), type: "text", text,
      sentAt: new Date().toISOString(),
    });
  }

  /** GET /subscribers/{subHandle}/livechat-state */
  state(subHandle) {
    const tenant = encodeURIComponent(this.tenantId);
    return this.call("GET", `/subscribers/${encodeURIComponent(subHandle)}/livechat-state?tenantId=${tenant}`);
  }

  /** DELETE /sessions/tenants/{tenantId}/subscribers/{subHandle}: the customer leaves. */
  endSession(subHandle) {
    const tenant = encodeURIComponent(this.tenantId);
    return this.call("DELETE", `/sessions/tenants/${tenant}/subscribers/${encodeURIComponent(subHandle)}`);
  }

  /** The events the demo's bot received for this customer after `cursor` (long poll). */
  events(subHandle, cursor, waitSeconds, signal) {
    const query = new URLSearchParams({ subHandle, after: String(cursor), wait: String(waitSeconds) });
    return this.call("GET", `/console/try/events?${query}`, undefined, signal);
  }
}
