// The console's one way to the operator API: same-origin fetch with the session cookie, and the
// session's CSRF token in a header on every write. Nothing is kept in browser storage.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function signedOut() {
  window.location.assign("/console/");
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signedOut();
    throw new ApiError(401, null);
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, problem);
  }
  return response.status === 204 ? null : response.json();
}

// Build an element; strings become text nodes, so user text is never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const STATUS_LABELS = { open: "Open", in_progress: "In progress", closed: "Closed" };

const dayAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
export function when(iso) {
  const moment = new Date(iso);
  const today = moment.toDateString() === new Date().toDateString();
  return (today ? timeOnly : dayAndTime).format(moment);
}

export function wireSignOut() {
  document.getElementById("sign-out")?.addEventListener("click", async () => {
    try { await api("/console/sign-out", { method: "POST" }); } finally { signedOut(); }
  });
}
