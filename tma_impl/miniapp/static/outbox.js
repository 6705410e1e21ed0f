// Writes the page has made but the server has not confirmed: new tickets and messages, each with
// ids made here, so sending one again never stores it twice. Kept in localStorage so a reload or
// a lost network keeps them; they hold what the user wrote and no credential (initData stays in
// memory, see api.js). Sent in the order written, each until the server answers.

import { ApiError, NetworkError } from "./api.js";

const RETRY_MAX_MS = 30000;

export class Outbox {
  #key;
  #api;
  #listeners = new Set();
  #running = false;
  #timer = null;
  #delay = 1000;

  constructor(userId, api) {
    this.#key = `support.pending.${userId}`;
    this.#api = api;
    addEventListener("online", () => this.flush());
  }

  items() {
    try {
      return JSON.parse(localStorage.getItem(this.#key) || "[]");
    } catch {
      return [];
    }
  }

  #save(items) {
    localStorage.setItem(this.#key, JSON.stringify(items));
    for (const listener of this.#listeners) listener(items);
  }

  onChange(listener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  add(write) {
    this.#save([...this.items(), { ...write, state: "pending", created_at: new Date().toISOString() }]);
    this.flush();
  }

  #update(id, changes) {
    this.#save(this.items().map((item) => (item.id === id ? { ...item, ...changes } : item)));
  }

  async flush() {
    if (this.#running) return;
    this.#running = true;
    clearTimeout(this.#timer);
    try {
      for (;;) {
        const next = this.items().find((item) => item.state !== "failed");
        if (!next) break;
        this.#update(next.id, { state: "sending" });
        try {
          const answer = next.kind === "ticket" ? await this.#api.openTicket(next) : await this.#api.writeMessage(next);
          this.#save(this.items().filter((item) => item.id !== next.id));
          this.#delay = 1000;
          for (const listener of this.#listeners) listener(this.items(), { sent: next, answer });
        } catch (error) {
          if (error instanceof NetworkError || (error instanceof ApiError && error.status >= 500)) {
            this.#update(next.id, { state: "pending" });
            this.#timer = setTimeout(() => this.flush(), this.#delay);
            this.#delay = Math.min(this.#delay * 2, RETRY_MAX_MS);
            break;
          }
          // Refused for good (say, too long): shown as not sent, never retried by itself.
          this.#update(next.id, { state: "failed", reason: error.message });
        }
      }
    } finally {
      this.#running = false;
    }
  }

  discard(id) {
    this.#save(this.items().filter((item) => item.id !== id));
  }
}
