// The three screens: my tickets, a new ticket, a conversation. Each returns
// { name, element, enter(), leave() }; enter() sets Telegram's main button.

import * as tg from "./telegram.js";
import { ApiError, NetworkError } from "./api.js";
import { h, replaceChildren, timeElement, uuid } from "./dom.js";

const LIST_REFRESH_MS = 10000;
const RECONNECT_MAX_MS = 15000;

function statusBadge(app, status) {
  return h("span", { class: `badge status-${status}` }, app.t(`status_${status}`));
}

function reason(app, error) {
  if (error instanceof NetworkError) return app.t("offline");
  return error.message;
}

// The in-page twin of the main button: always there for keyboards; with Telegram's MainButton
// present it is shown only while focused (CSS: .main-fallback).
function fallbackButton(text, props = {}) {
  return h("button", { type: "submit", class: "primary main-fallback", ...props }, text);
}

export function listScreen(app) {
  const t = app.t;
  const list = h("ul", { class: "tickets", "aria-label": t("my_tickets") });
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, t("load_more"));
  const empty = h("p", { class: "hint empty", hidden: true }, t("no_tickets"));
  const newButton = h("button", { type: "button", class: "primary main-fallback", id: "new-ticket" }, t("new_ticket"));
  const heading = h("h2", { tabIndex: -1 }, t("my_tickets"));
  const element = h("section", { class: "list-screen" }, heading, newButton, empty, list, more);
  let tickets = new Map();
  let cursor = null;
  let timer = null;
  let observer = null;
  let unsubscribe = () => {};

  const openNew = () => app.navigate({ screen: "new" });
  newButton.addEventListener("click", openNew);

  function render() {
    const pending = app.outbox.items().filter((item) => item.kind === "ticket");
    const rows = [...tickets.values()].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
    const items = [
      ...pending
        .filter((item) => !tickets.has(item.ticket_id))
        .map((item) => ticketItem({ id: item.ticket_id, subject: item.subject, status: "open", updated_at: item.created_at, unread: 0 }, item.state)),
      ...rows.map((ticket) => ticketItem(ticket)),
    ];
    replaceChildren(list, items);
    empty.hidden = items.length > 0;
    more.hidden = !cursor;
  }

  function ticketItem(ticket, pendingState = null) {
    const link = h(
      "a",
      { href: `?ticket=${ticket.id}`, class: "ticket", dataset: { ticket: ticket.id } },
      h("span", { class: "ticket-subject" }, ticket.subject),
      h(
        "span",
        { class: "ticket-meta" },
        statusBadge(app, ticket.status),
        pendingState ? h("span", { class: "pending-note" }, t(pendingState === "failed" ? "failed" : "pending", { reason: "" })) : null,
        timeElement(app.language, ticket.updated_at),
      ),
      ticket.unread > 0
        ? h("span", { class: "unread", "aria-label": t("unread_label", { count: ticket.unread }) }, String(ticket.unread))
        : null,
    );
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      app.navigate({ screen: "ticket", ticket: ticket.id });
    });
    return h("li", {}, link);
  }

  async function load(after = null) {
    try {
      const page = await app.api.tickets(after);
      if (!after) {
        // A refresh of the first page: tickets further down keep their place until reloaded.
        const fresh = new Map(page.tickets.map((ticket) => [ticket.id, ticket]));
        for (const [id, ticket] of tickets) if (!fresh.has(id) && !after) fresh.set(id, ticket);
        tickets = fresh;
        if (cursor === null || tickets.size <= page.tickets.length) cursor = page.next_cursor;
      } else {
        for (const ticket of page.tickets) tickets.set(ticket.id, ticket);
        cursor = page.next_cursor;
      }
      render();
      element.dataset.loaded = "true";
    } catch (error) {
      app.notice(t("error", { reason: reason(app, error) }));
      render();
    }
  }

  more.addEventListener("click", () => load(cursor));

  return {
    name: "list",
    element,
    enter() {
      tg.mainButton(t("new_ticket"), openNew);
      heading.focus();
      render();
      load();
      timer = setInterval(() => document.visibilityState === "visible" && load(), LIST_REFRESH_MS);
      observer = new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting) && cursor) load(cursor);
      });
      observer.observe(more);
      unsubscribe = app.outbox.onChange((_items, done) => (done ? load() : render()));
    },
    leave() {
      clearInterval(timer);
      observer && observer.disconnect();
      unsubscribe();
      tg.mainButton(null);
    },
  };
}

export function newTicketScreen(app) {
  const t = app.t;
  const subject = h("input", { id: "subject", name: "subject", required: true, maxLength: 255, autocomplete: "off", placeholder: t("subject_hint") });
  const message = h("textarea", { id: "message", name: "message", required: true, maxLength: 4096, rows: 6, placeholder: t("message_hint") });
  const form = h(
    "form",
    { class: "new-ticket", noValidate: false },
    h("h2", {}, t("new_ticket")),
    h("label", { for: "subject" }, t("subject")),
    subject,
    h("label", { for: "message" }, t("message")),
    message,
    fallbackButton(t("create"), { id: "create" }),
  );
  const submitWithKeys = (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  };
  message.addEventListener("keydown", submitWithKeys);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!subject.value.trim() || !message.value.trim()) {
      (subject.value.trim() ? message : subject).focus();
      app.notice(t("required"));
      return;
    }
    const ticketId = uuid();
    app.outbox.add({ kind: "ticket", id: uuid(), ticket_id: ticketId, subject: subject.value.trim(), message: message.value.trim() });
    app.navigate({ screen: "ticket", ticket: ticketId }, { replace: true });
  });
  return {
    name: "new",
    element: form,
    enter() {
      tg.mainButton(t("create"), () => form.requestSubmit());
      subject.focus();
    },
    leave() {
      tg.mainButton(null);
    },
  };
}

export function conversationScreen(app, ticketId) {
  const t = app.t;
  const heading = h("h2", { tabIndex: -1, class: "subject" }, t("conversation"));
  const badge = h("span", { class: "badge" });
  const log = h("ol", { class: "messages", role: "log", "aria-live": "polite", "aria-label": t("conversation") });
  const closedHint = h("p", { class: "hint", hidden: true }, t("closed_hint"));
  const reply = h("textarea", { id: "reply", name: "reply", required: true, maxLength: 4096, rows: 2, placeholder: t("reply_hint") });
  const form = h(
    "form",
    { class: "reply" },
    h("label", { for: "reply", class: "visually-hidden" }, t("reply")),
    reply,
    fallbackButton(t("send"), { id: "send" }),
  );
  const statusButton = h("button", { type: "button", class: "secondary", id: "status-action" });
  const element = h(
    "section",
    { class: "conversation-screen", dataset: { ticket: ticketId } },
    h("div", { class: "conversation-head" }, heading, badge),
    log,
    closedHint,
    form,
    h("div", { class: "actions" }, statusButton),
  );
  const shown = new Map(); // message id -> element: a message appears once, however it arrives
  let status = "open";
  let lastSeq = 0;
  let stopped = false;
  let stream = null;
  let readTimer = null;
  let unsubscribe = () => {};

  function setStatus(next) {
    status = next;
    element.dataset.status = status;
    replaceChildren(badge, t(`status_${status}`));
    badge.className = `badge status-${status}`;
    closedHint.hidden = status !== "closed";
    statusButton.textContent = t(status === "closed" ? "reopen_ticket" : "close_ticket");
  }

  function messageItem(message, pendingState = null) {
    const mine = message.sender_type === "tma";
    const who = mine ? t("you") : message.operator_name || t("support");
    const item = h(
      "li",
      { class: `message ${mine ? "mine" : "theirs"}${pendingState ? " pending" : ""}`, dataset: { id: message.id, state: pendingState || "sent" } },
      h("p", { class: "meta" }, h("span", { class: "who" }, who), " · ", timeElement(app.language, message.created_at)),
      h("p", { class: "body" }, message.body),
      pendingState ? h("p", { class: "pending-note" }, pendingState === "failed" ? t("failed", { reason: message.reason || "" }) : t(pendingState === "sending" ? "sending" : "pending")) : null,
    );
    return item;
  }

  function place(message, pendingState = null) {
    const item = messageItem(message, pendingState);
    const existing = shown.get(message.id);
    if (existing) {
      if (!pendingState || existing.dataset.state !== "sent") existing.replaceWith(item);
      else return; // the server's copy wins over a pending one
    } else {
      const firstPending = pendingState ? null : log.querySelector(".message.pending");
      log.insertBefore(item, firstPending);
    }
    shown.set(message.id, item);
  }

  function statusLine(change) {
    log.insertBefore(
      h("li", { class: "system" }, t("status_changed", { status: t(`status_${change.status}`) }), " · ", timeElement(app.language, change.at)),
      log.querySelector(".message.pending"),
    );
  }

  function renderPending() {
    for (const item of app.outbox.items()) {
      if (item.ticket_id !== ticketId) continue;
      if (item.kind === "ticket") heading.textContent = heading.textContent === t("conversation") ? item.subject : heading.textContent;
      place({ id: item.id, sender_type: "tma", body: item.message, created_at: item.created_at, reason: item.reason }, item.state);
    }
  }

  function apply(event) {
    if (event.seq <= lastSeq) return; // already shown
    lastSeq = event.seq;
    if (event.kind === "message") place(event.message);
    else statusLine({ status: event.status, at: event.at });
    setStatus(event.status);
  }

  function scheduleRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(() => app.api.markRead(ticketId, lastSeq).catch(() => {}), 300);
  }

  // Reconnects after the last event seen whenever the response ends or the network drops; going
  // offline cuts the stream at once (a dead mobile connection may otherwise hang for minutes),
  // coming back online reconnects without waiting out the backoff.
  let cut = false;
  let wake = () => {};
  const onOffline = () => {
    cut = true;
    stream && stream.abort();
  };
  const onOnline = () => wake();

  async function live() {
    let delay = 500;
    addEventListener("offline", onOffline);
    addEventListener("online", onOnline);
    while (!stopped) {
      stream = new AbortController();
      cut = false;
      try {
        for await (const event of app.api.events(ticketId, lastSeq, stream.signal)) {
          delay = 500;
          element.dataset.live = "true";
          if (event.kind === "message" || event.kind === "status") {
            const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
            apply(event);
            renderPending();
            if (atBottom) log.lastElementChild && log.lastElementChild.scrollIntoView({ block: "end" });
            scheduleRead();
          }
        }
      } catch (error) {
        if (stopped || (error.name === "AbortError" && !cut)) return;
        if (error instanceof ApiError && error.status === 404) return;
      }
      element.dataset.live = "false";
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }

  async function load() {
    try {
      const conversation = await app.api.conversation(ticketId);
      heading.textContent = conversation.ticket.subject;
      const events = [
        ...conversation.messages.map((message) => ({ seq: message.seq, kind: "message", message, status: null })),
        ...conversation.status_changes.map((change) => ({ seq: change.seq, kind: "status", status: change.status, at: change.at })),
      ].sort((a, b) => a.seq - b.seq);
      for (const event of events) {
        if (event.kind === "message") place(event.message);
        else statusLine(event);
      }
      lastSeq = conversation.last_seq;
      setStatus(conversation.ticket.status);
      renderPending();
      element.dataset.loaded = "true";
      log.lastElementChild && log.lastElementChild.scrollIntoView({ block: "end" });
      scheduleRead();
      live();
    } catch (error) {
      const waiting = app.outbox.items().some((item) => item.kind === "ticket" && item.ticket_id === ticketId);
      if (waiting) {
        // Not created yet: it is in this page's outbox. Show it; load once it is sent.
        setStatus("open");
        renderPending();
        element.dataset.loaded = "pending";
        const stop = app.outbox.onChange((_items, done) => {
          if (done && done.sent.ticket_id === ticketId && done.sent.kind === "ticket") {
            stop();
            if (!stopped) load();
          }
        });
        return;
      }
      if (error instanceof ApiError && error.status === 404) {
        replaceChildren(log, h("li", { class: "system" }, t("not_found")));
        form.hidden = true;
        statusButton.hidden = true;
        return;
      }
      app.notice(t("error", { reason: reason(app, error) }));
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = reply.value.trim();
    if (!text) {
      reply.focus();
      return;
    }
    app.outbox.add({ kind: "message", id: uuid(), ticket_id: ticketId, message: text });
    reply.value = "";
    renderPending();
    log.lastElementChild && log.lastElementChild.scrollIntoView({ block: "end" });
  });
  reply.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  statusButton.addEventListener("click", async () => {
    statusButton.disabled = true;
    try {
      const ticket = await app.api.setStatus(ticketId, status === "closed" ? "open" : "closed");
      setStatus(ticket.status);
    } catch (error) {
      app.notice(t("error", { reason: reason(app, error) }));
    } finally {
      statusButton.disabled = false;
    }
  });

  return {
    name: "ticket",
    element,
    enter() {
      setStatus("open");
      tg.mainButton(t("send"), () => form.requestSubmit());
      heading.focus();
      unsubscribe = app.outbox.onChange(() => renderPending());
      load();
    },
    leave() {
      stopped = true;
      removeEventListener("offline", onOffline);
      removeEventListener("online", onOnline);
      stream && stream.abort();
      clearTimeout(readTimer);
      unsubscribe();
      tg.mainButton(null);
    },
  };
}
