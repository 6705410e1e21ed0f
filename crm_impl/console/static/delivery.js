// Delivery health: undelivered events with their errors; admins replay or skip dead ones.
import { api, h, when, wireSignOut } from "./api.js";

const body = document.getElementById("events");
const admin = document.getElementById("me").dataset.admin === "yes";
const stateSelect = document.getElementById("state");
const summary = document.getElementById("health-summary");
const dialog = document.getElementById("skip-dialog");
const reason = document.getElementById("skip-reason");
let skipping = null;

function actions(e) {
  if (!admin || e.state !== "dead") return "—";
  return h(
    "span",
    { class: "row-actions" },
    h("button", { type: "button", class: "btn", onclick: () => replay(e.id) }, "Replay"),
    h("button", { type: "button", class: "btn btn-danger", onclick: () => askSkip(e.id) }, "Skip…"),
  );
}

function row(e) {
  return h(
    "tr",
    { dataset: { eventId: e.id, state: e.state } },
    h("td", {}, h("span", { class: "mono" }, `#${e.id}`), h("br"), h("span", { class: "hint" }, e.kind)),
    h("td", {}, h("a", { href: `/console/tickets/${e.ticket_id}` }, e.ticket_subject ?? e.ticket_id)),
    h("td", {}, h("span", { class: `badge state-${e.state}` }, e.state),
      e.state === "pending" ? h("span", { class: "hint" }, ` next ${when(e.next_attempt_at)}`) : null),
    h("td", { class: "num" }, String(e.attempts)),
    h("td", { class: "error-text" }, e.last_error ?? "—",
      e.resolution ? h("pre", { class: "resolution" }, e.resolution) : null),
    h("td", {}, actions(e)),
  );
}

async function load() {
  const params = new URLSearchParams();
  if (stateSelect.value) params.set("state", stateSelect.value);
  const events = await api(`/api/crm/outbox?${params}`);
  body.replaceChildren(
    ...(events.length ? events.map(row) : [h("tr", {}, h("td", { colspan: 6, class: "none" }, "Nothing waiting: every event was delivered."))]),
  );
  const dead = events.filter((e) => e.state === "dead").length;
  summary.textContent = `${events.length} event(s), ${dead} dead`;
}

async function replay(id) {
  await api(`/api/crm/outbox/${id}/replay`, { method: "POST" });
  summary.textContent = `Event #${id} replayed: it is pending and due now.`;
  await load();
}

function askSkip(id) {
  skipping = id;
  document.getElementById("skip-event").textContent = `#${id}`;
  reason.value = "";
  dialog.showModal();
}

document.getElementById("skip-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!reason.value.trim()) return;
  await api(`/api/crm/outbox/${skipping}/skip`, { method: "POST", body: { reason: reason.value } });
  dialog.close();
  await load();
});
document.getElementById("skip-cancel").addEventListener("click", () => dialog.close());
stateSelect.addEventListener("change", load);
document.getElementById("refresh").addEventListener("click", load);

wireSignOut();
load();
