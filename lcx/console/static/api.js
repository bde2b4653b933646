// The management API (API.md section 6) over fetch, with the agent's bearer token.

/** An error answer of lcx: status, code and message of the error envelope. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, { json, form, raw } = {}) {
    const headers = { Authorization: `Bearer ${this.token}` };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    const response = await fetch(path, { method, headers, body });
    if (!response.ok) {
      let code = "error";
      let message = response.statusText;
      try {
        const envelope = await response.json();
        code = envelope.error.code;
        message = envelope.error.message;
      } catch {
        // not an lcx envelope: keep the status text
      }
      throw new ApiError(response.status, code, message);
    }
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, json) {
    return this.request("POST", path, { json });
  }

  put(path, json) {
    return this.request("PUT", path, { json });
  }

  patch(path, json) {
    return this.request("PATCH", path, { json });
  }

  delete(path) {
    return this.request("DELETE", path);
  }

  /** Upload a file (POST /livechat-attachments), tied to a conversation. */
  upload(file, conversationId) {
    const form = new FormData();
    form.append("conversationId", conversationId);
    form.append("file", file, file.name);
    return this.request("POST", "/livechat-attachments", { form });
  }

  /** Download a response body as a file named by its Content-Disposition. */
  async download(path, fallbackName) {
    const response = await this.request("GET", path, { raw: true });
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = match ? match[1] : fallbackName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}
