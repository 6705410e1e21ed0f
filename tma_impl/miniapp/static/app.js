// The Mini App: boot (identity, language, theme), navigation between the three screens, and the
// main and back buttons. Screens are in screens.js.

import * as tg from "./telegram.js";
import { Api } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { pickLanguage, translator } from "./i18n.js";
import { Outbox } from "./outbox.js";
import { conversationScreen, listScreen, newTicketScreen } from "./screens.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const START_PREFIX = "ticket_"; // tma_impl/miniapp/links.py makes these

const app = {
  t: translator("en"),
  language: "en",
  api: null,
  outbox: null,
  screen: null,
  notice(text) {
    const notice = document.getElementById("notice");
    notice.textContent = text;
    notice.hidden = !text;
  },
  navigate(state, { replace = false } = {}) {
    const url = state.ticket ? `?ticket=${encodeURIComponent(state.ticket)}` : state.screen === "new" ? "?new" : "./";
    const entry = { ...state, inApp: true };
    if (replace) history.replaceState(entry, "", url);
    else history.pushState(entry, "", url);
    show(entry);
  },
};

// A ticket from how the page was opened: ?ticket=<id> (a notification's web_app button) or a
// start parameter ticket_<id> (a t.me/<bot>/<app>?startapp=... link).
export function ticketFromLaunch() {
  const fromQuery = new URLSearchParams(location.search).get("ticket");
  if (fromQuery && UUID.test(fromQuery)) return fromQuery;
  const start = tg.startParam();
  const id = start.startsWith(START_PREFIX) ? start.slice(START_PREFIX.length) : start;
  return UUID.test(id) ? id : null;
}

function stateFromUrl() {
  const query = new URLSearchParams(location.search);
  const ticket = query.get("ticket");
  if (ticket && UUID.test(ticket)) return { screen: "ticket", ticket };
  if (query.has("new")) return { screen: "new" };
  return { screen: "list" };
}

function show(state) {
  if (app.screen) app.screen.leave();
  const root = document.getElementById("screen");
  const previous = app.screen ? app.screen.name : null;
  app.cameFromList = state.screen !== "list" && (previous === "list" || (previous && app.cameFromList));
  app.screen =
    state.screen === "ticket"
      ? conversationScreen(app, state.ticket)
      : state.screen === "new"
        ? newTicketScreen(app)
        : listScreen(app);
  replaceChildren(root, app.screen.element);
  const inList = app.screen.name === "list";
  const back = document.getElementById("back");
  if (!tg.backButton(inList ? null : goBack)) back.hidden = inList;
  else back.hidden = true;
  app.screen.enter();
}

function goBack() {
  if (app.cameFromList) history.back();
  else app.navigate({ screen: "list" }, { replace: true });
}

function userFromInitData(initData) {
  try {
    return JSON.parse(new URLSearchParams(initData).get("user"));
  } catch {
    return null;
  }
}

function translateStatic() {
  document.documentElement.lang = app.language;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = app.t(element.dataset.i18n);
  }
  document.title = app.t("title");
}

async function developmentIdentity() {
  // Outside Telegram. The server has this route only in development; in production it is a 404.
  try {
    const response = await fetch("/app/dev-identity", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ language_code: pickLanguage(navigator.language) }),
      credentials: "omit",
    });
    return response.ok ? (await response.json()).init_data : null;
  } catch {
    return null;
  }
}

function outsideTelegram() {
  app.language = pickLanguage(navigator.language);
  app.t = translator(app.language);
  translateStatic();
  replaceChildren(
    document.getElementById("screen"),
    h("section", { class: "empty", id: "outside-telegram" },
      h("h2", {}, app.t("open_in_telegram")),
      h("p", { class: "hint" }, app.t("open_in_telegram_detail"))),
  );
}

async function boot() {
  tg.start();
  document.getElementById("back").addEventListener("click", goBack);
  let initData = tg.initData();
  let user = tg.launchUser();
  if (!initData) {
    initData = await developmentIdentity();
    if (!initData) return outsideTelegram();
    user = userFromInitData(initData);
    document.documentElement.dataset.identity = "development";
  }
  app.language = pickLanguage(user && user.language_code);
  app.t = translator(app.language);
  translateStatic();
  app.api = new Api(initData);
  app.outbox = new Outbox(user ? user.id : "unknown", app.api);
  addEventListener("offline", () => app.notice(app.t("offline")));
  addEventListener("online", () => app.notice(""));
  addEventListener("popstate", (event) => show(event.state || stateFromUrl()));
  if (tg.hasMainButton()) document.documentElement.classList.add("has-main-button");
  const launched = ticketFromLaunch();
  const state = launched ? { screen: "ticket", ticket: launched } : stateFromUrl();
  history.replaceState({ ...state, inApp: true }, "", state.ticket ? `?ticket=${state.ticket}` : location.search || "./");
  show(state);
  app.outbox.flush();
}

boot();
