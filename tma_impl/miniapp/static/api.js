// The user API (/api/support). initData travels only in the Authorization header, and lives only
// in this module's memory: never in a URL, never in storage.

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// A request that never reached the server (offline, connection cut): worth retrying as is.
export class NetworkError extends Error {}

export class Api {
  #auth;

  constructor(initData) {
    this.#auth = `tma ${initData}`;
  }

  async #fetch(method, path, body, signal) {
    const headers = { Authorization: this.#auth };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new NetworkError(error.message);
    }
  }

  async #json(method, path, body) {
    const response = await this.#fetch(method, path, body);
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  tickets(after = null, limit = 20) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (after) query.set("after", after);
    return this.#json("GET", `/api/support/tickets?${query}`);
  }

  conversation(ticketId) {
    return this.#json("GET", `/api/support/tickets/${encodeURIComponent(ticketId)}`);
  }

  openTicket(write) {
    return this.#json("POST", "/api/support/tickets", {
      id: write.ticket_id,
      subject: write.subject,
      message: write.message,
      message_id: write.id,
    });
  }

  writeMessage(write) {
    return this.#json("POST", `/api/support/tickets/${encodeURIComponent(write.ticket_id)}/messages`, {
      id: write.id,
      message: write.message,
    });
  }

  setStatus(ticketId, status) {
    return this.#json("POST", `/api/support/tickets/${encodeURIComponent(ticketId)}/status`, { status });
  }

  markRead(ticketId, seq) {
    return this.#json("POST", `/api/support/tickets/${encodeURIComponent(ticketId)}/read`, { seq });
  }

  // The conversation's events after `after`, one object per line, until the server ends the
  // response or `signal` aborts it. fetch() rather than EventSource: it can send Authorization.
  async *events(ticketId, after, signal) {
    const path = `/api/support/tickets/${encodeURIComponent(ticketId)}/events?after=${after}`;
    const response = await this.#fetch("GET", path, undefined, signal);
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffered += value;
        let newline;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line) yield JSON.parse(line);
        }
      }
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new NetworkError(error.message);
    } finally {
      reader.releaseLock();
    }
  }
}
