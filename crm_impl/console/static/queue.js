// The queue (left) and the open conversation (right), kept live by two EventSource streams:
// the queue stream says "changed" and the list is fetched again; the conversation stream sends
// each new message once (resuming after the last one on reconnect) and the ticket's state.
import { api, h, STATUS_LABELS, signedOut, when, wireSignOut } from "./api.js";

const PAGE = 25;
const main = document.getElementById("main");
const list = document.getElementById("ticket-list");
const filtersForm = document.getElementById("filters");
const thread = document.getElementById("thread");
const replyForm = document.getElementById("reply-form");
const replyBox = document.getElementById("reply");
const replyError = document.getElementById("reply-error");
const me = document.getElementById("me").dataset.operatorId;

const state = { filter: "all", status: "", q: "", offset: 0, total: 0 };
let ticketId = main.dataset.ticketId || null;
let conversationStream = null;
let lastSeq = 0;
let queueLoading = null;
let queueDirty = false;

function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function customerName(t) {
  return [t.customer_first_name, t.customer_last_name].filter(Boolean).join(" ");
}

// --- the queue ----------------------------------------------------------------------------

function queueItem(t) {
  const unread = t.unread > 0;
  const link = h(
    "a",
    {
      href: `/console/tickets/${t.id}`,
      class: `ticket${unread ? " unread" : ""}`,
      "aria-current": t.id === ticketId ? "true" : null,
      dataset: { ticketId: t.id },
      onclick: (event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey) return;
        event.preventDefault();
        openTicket(t.id, { push: true });
      },
    },
    h(
      "span",
      { class: "ticket-top" },
      h("span", { class: "who" }, customerName(t),
        t.customer_username ? h("span", { class: "handle" }, ` @${t.customer_username}`) : null),
      h("time", { datetime: t.updated_at }, when(t.updated_at)),
    ),
    h("span", { class: "subject" }, t.subject),
    h("span", { class: "preview" }, t.preview ?? ""),
    h(
      "span",
      { class: "ticket-bottom" },
      h("span", { class: `badge status-${t.status}` }, STATUS_LABELS[t.status] ?? t.status),
      h("span", { class: "assignee" }, t.assignee_name ? `→ ${t.assignee_name}` : "Unassigned"),
      unread ? h("span", { class: "count", "aria-label": `${t.unread} unread` }, String(t.unread)) : null,
    ),
  );
  return h("li", {}, link);
}

async function loadQueue() {
  if (queueLoading) {
    queueDirty = true;
    return queueLoading;
  }
  const params = new URLSearchParams({ filter: state.filter, limit: PAGE, offset: state.offset });
  if (state.status) params.set("status", state.status);
  if (state.q) params.set("q", state.q);
  queueLoading = api(`/api/crm/queue?${params}`)
    .then((page) => {
      state.total = page.total;
      if (page.items.length === 0 && state.offset > 0 && page.total > 0) {
        state.offset = Math.max(0, state.offset - PAGE);
        queueDirty = true;
        return;
      }
      list.replaceChildren(
        ...(page.items.length
          ? page.items.map(queueItem)
          : [h("li", { class: "none" }, "No conversations match.")]),
      );
      const first = page.total ? state.offset + 1 : 0;
      const last = state.offset + page.items.length;
      document.getElementById("page-info").textContent = `${first}–${last} of ${page.total}`;
      document.getElementById("prev").disabled = state.offset === 0;
      document.getElementById("next").disabled = last >= page.total;
    })
    .finally(() => {
      queueLoading = null;
      if (queueDirty) {
        queueDirty = false;
        loadQueue();
      }
    });
  return queueLoading;
}

function readFilters() {
  const data = new FormData(filtersForm);
  state.filter = data.get("filter") || "all";
  state.status = data.get("status") || "";
  state.q = (data.get("q") || "").trim();
  state.offset = 0;
  loadQueue();
}

let searchTimer = null;
filtersForm.addEventListener("change", readFilters);
filtersForm.addEventListener("submit", (event) => { event.preventDefault(); readFilters(); });
document.getElementById("q").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(readFilters, 250);
});
document.getElementById("prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE);
  loadQueue();
});
document.getElementById("next").addEventListener("click", () => {
  state.offset += PAGE;
  loadQueue();
});

function watchQueue() {
  const stream = new EventSource("/api/crm/queue/events");
  stream.addEventListener("queue", () => loadQueue());
  stream.addEventListener("signed-out", () => { stream.close(); signedOut(); });
}

// --- the conversation ---------------------------------------------------------------------

function deliveryLine(d) {
  if (!d) return null;
  let text;
  if (d.state === "delivered") text = "Delivered to the Mini App";
  else if (d.state === "pending") text = "Pending: not delivered yet";
  else if (d.state === "skipped") text = "Not delivered: skipped by an admin";
  else {
    const behind = d.held_back_by ? ` (waiting behind event #${d.held_back_by})` : "";
    text = d.dead
      ? `Not delivered${behind}: ${d.last_error ?? "refused"}. An admin can replay it under Delivery health.`
      : `Failing${behind}, attempt ${d.attempts}: ${d.last_error ?? "no answer"}. Retrying.`;
  }
  return h("p", { class: `delivery delivery-${d.state}`, dataset: { delivery: d.state } }, text);
}

function messageNode(m) {
  const mine = m.sender_type === "crm";
  return h(
    "li",
    { class: `msg ${mine ? "from-operator" : "from-customer"}`, dataset: { messageId: m.id, seq: m.seq } },
    h(
      "div",
      { class: "bubble" },
      h("p", { class: "author" }, mine ? (m.author_name ?? "Operator") : "Customer"),
      h("p", { class: "text" }, m.body),
      m.attachments?.length
        ? h("ul", { class: "attachments" }, m.attachments.map((a) => h("li", {}, a.name ?? a.url)))
        : null,
      h("p", { class: "meta" }, h("time", { datetime: m.created_at }, when(m.created_at))),
    ),
    mine ? deliveryLine(m.delivery) : null,
  );
}

function addMessage(m) {
  if (thread.querySelector(`[data-message-id="${m.id}"]`)) return false;
  thread.append(messageNode(m));
  lastSeq = Math.max(lastSeq, m.seq ?? 0);
  thread.scrollTop = thread.scrollHeight;
  return true;
}

function setDelivery(messageId, d) {
  const node = thread.querySelector(`[data-message-id="${messageId}"]`);
  if (!node) return;
  node.querySelector(".delivery")?.remove();
  const line = deliveryLine(d);
  if (line) node.append(line);
}

function showTicket(t) {
  document.getElementById("conv-subject").textContent = t.subject;
  const badge = document.getElementById("conv-status");
  badge.className = `badge status-${t.status}`;
  badge.textContent = STATUS_LABELS[t.status] ?? t.status;
  document.getElementById("conv-assignee").textContent = t.assignee_name
    ? `Assigned to ${t.assignee_name}`
    : "Unassigned";
  document.getElementById("set-status").value = t.status;
  const assign = document.getElementById("assign");
  assign.hidden = t.assignee_id === me;
}

function showProfile(c) {
  const rows = [
    ["Name", [c.first_name, c.last_name].filter(Boolean).join(" ")],
    ["Username", c.username ? `@${c.username}` : "—"],
    ["Language", c.language_code ?? "—"],
    ["Telegram ID", String(c.telegram_user_id)],
  ];
  document.getElementById("profile").replaceChildren(
    ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

async function markRead() {
  if (!ticketId || lastSeq === 0 || document.visibilityState !== "visible") return;
  try {
    await api(`/api/crm/tickets/${ticketId}/read`, { method: "POST", body: { seq: lastSeq } });
  } catch { /* the next message tries again */ }
}

function closeConversation() {
  conversationStream?.close();
  conversationStream = null;
}

async function openTicket(id, { push = false } = {}) {
  closeConversation();
  ticketId = id;
  if (push) history.pushState({ ticketId: id }, "", `/console/tickets/${id}`);
  main.classList.toggle("has-ticket", Boolean(id));
  for (const a of list.querySelectorAll("a.ticket")) {
    if (a.dataset.ticketId === id) a.setAttribute("aria-current", "true");
    else a.removeAttribute("aria-current");
  }
  document.getElementById("empty-conversation").hidden = Boolean(id);
  document.getElementById("thread-pane").hidden = !id;
  if (!id) return;
  const view = await api(`/api/crm/tickets/${id}`);
  if (ticketId !== id) return;
  showTicket(view.ticket);
  showProfile(view.customer);
  thread.replaceChildren();
  lastSeq = 0;
  for (const m of view.messages) addMessage(m);
  lastSeq = view.last_seq;
  markRead();
  const stream = new EventSource(`/api/crm/tickets/${id}/events?after=${view.last_seq}`);
  conversationStream = stream;
  stream.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    if (addMessage(m) && m.sender_type === "tma") markRead();
  });
  stream.addEventListener("state", (event) => {
    const s = JSON.parse(event.data);
    showTicket(s.ticket);
    for (const [messageId, d] of Object.entries(s.deliveries)) setDelivery(messageId, d);
  });
  stream.addEventListener("signed-out", () => { stream.close(); signedOut(); });
}

async function sendReply() {
  const text = replyBox.value.trim();
  if (!text || !ticketId) return;
  replyError.textContent = "";
  const send = document.getElementById("send");
  send.disabled = true;
  try {
    const m = await api(`/api/crm/tickets/${ticketId}/messages`, {
      method: "POST",
      body: { id: uuid4(), message: text },
    });
    addMessage({ ...m, delivery: m.delivery ?? { state: "pending", attempts: 0 } });
    replyBox.value = "";
  } catch (error) {
    replyError.textContent = `Not sent: ${error.message}`;
  } finally {
    send.disabled = false;
    replyBox.focus();
  }
}

replyForm.addEventListener("submit", (event) => { event.preventDefault(); sendReply(); });
replyBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    sendReply();
  }
});
document.getElementById("assign").addEventListener("click", async () => {
  const t = await api(`/api/crm/tickets/${ticketId}/assign`, { method: "POST" });
  document.getElementById("assign").hidden = t.assignee_id === me;
  loadQueue();
});
document.getElementById("set-status").addEventListener("change", async (event) => {
  await api(`/api/crm/tickets/${ticketId}/status`, { method: "POST", body: { status: event.target.value } });
});
document.getElementById("back").addEventListener("click", (event) => {
  event.preventDefault();
  history.pushState({}, "", "/console/");
  openTicket(null);
});
window.addEventListener("popstate", () => {
  const match = location.pathname.match(/^\/console\/tickets\/([0-9a-f-]{36})$/);
  openTicket(match ? match[1] : null);
});
document.addEventListener("visibilitychange", markRead);

wireSignOut();
watchQueue();
loadQueue();
if (ticketId) openTicket(ticketId);
