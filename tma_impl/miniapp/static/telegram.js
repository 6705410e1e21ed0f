// What the page uses of Telegram.WebApp (https://core.telegram.org/bots/webapps), with in-page
// stand-ins where it is absent: outside Telegram, or a client without MainButton/BackButton.

const webApp = window.Telegram && window.Telegram.WebApp;

// Telegram's themeParams keys, as the CSS variables --tg-theme-<key with dashes>.
const THEME_KEYS = [
  "bg_color", "text_color", "hint_color", "link_color", "button_color", "button_text_color",
  "secondary_bg_color", "header_bg_color", "accent_text_color", "section_bg_color",
  "section_header_text_color", "subtitle_text_color", "destructive_text_color",
];

export function initData() {
  return (webApp && webApp.initData) || "";
}

export function launchUser() {
  return (webApp && webApp.initDataUnsafe && webApp.initDataUnsafe.user) || null;
}

export function startParam() {
  const fromTelegram = webApp && webApp.initDataUnsafe && webApp.initDataUnsafe.start_param;
  return fromTelegram || new URLSearchParams(location.search).get("tgWebAppStartParam") || "";
}

export function insideTelegram() {
  return Boolean(initData());
}

function applyTheme() {
  const root = document.documentElement;
  const params = (webApp && webApp.themeParams) || {};
  for (const key of THEME_KEYS) {
    const name = `--tg-theme-${key.replaceAll("_", "-")}`;
    if (params[key]) root.style.setProperty(name, params[key]);
    else root.style.removeProperty(name);
  }
  const scheme = webApp && webApp.colorScheme;
  if (scheme === "dark" || scheme === "light") root.dataset.scheme = scheme;
  else delete root.dataset.scheme;
}

export function start() {
  applyTheme();
  if (!webApp) return;
  webApp.onEvent("themeChanged", applyTheme);
  webApp.ready();
  webApp.expand();
}

// The main action of a screen: Telegram's MainButton when there is one (the in-page button then
// shows only when it has keyboard focus), the in-page button otherwise.
export const hasMainButton = () => Boolean(insideTelegram() && webApp.MainButton);
export const hasBackButton = () => Boolean(insideTelegram() && webApp.BackButton && webApp.isVersionAtLeast && webApp.isVersionAtLeast("6.1"));

let mainHandler = null;
export function mainButton(text, handler) {
  if (!hasMainButton()) return;
  const button = webApp.MainButton;
  if (mainHandler) button.offClick(mainHandler);
  mainHandler = handler;
  if (!handler) {
    button.hide();
    return;
  }
  button.setText(text);
  button.onClick(handler);
  button.enable();
  button.show();
}

export function mainButtonProgress(active) {
  if (!hasMainButton() || !mainHandler) return;
  if (active) webApp.MainButton.showProgress(false);
  else webApp.MainButton.hideProgress();
}

let backHandler = null;
export function backButton(handler) {
  if (!hasBackButton()) return false;
  const button = webApp.BackButton;
  if (backHandler) button.offClick(backHandler);
  backHandler = handler;
  if (handler) {
    button.onClick(handler);
    button.show();
  } else {
    button.hide();
  }
  return true;
}
