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

// Telegram's colours are the client's; some pairs fall short of a 4.5:1 contrast for small text
// (Telegram's light accent on its light grey is ~3:1). Text in the accent colour and text on the
// button colour use nearby colours that reach it: --accent-readable, --button-readable.
function rgb(value) {
  const match = /^#([0-9a-f]{6})$/i.exec(String(value).trim());
  if (!match) return null;
  const n = parseInt(match[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
function luminance(colour) {
  const [r, g, b] = colour.map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}
function hex(colour) {
  return `#${colour.map((c) => Math.round(c).toString(16).padStart(2, "0")).join("")}`;
}
// `colour` moved towards `target` just far enough to read at 4.5:1 against every background.
function readable(colour, target, backgrounds) {
  for (let step = 0; step <= 20; step += 1) {
    const k = step / 20;
    const mixed = colour.map((c, i) => c + (target[i] - c) * k);
    if (backgrounds.every((bg) => contrast(mixed, bg) >= 4.5)) return hex(mixed);
  }
  return hex(target);
}
function readableColours() {
  const root = document.documentElement;
  const style = getComputedStyle(root);
  const read = (name) => rgb(style.getPropertyValue(name));
  const [text, bg, surface, accent, button, buttonText] = [
    "--text", "--bg", "--surface", "--accent", "--button", "--button-text",
  ].map(read);
  if (text && bg && surface && accent) {
    root.style.setProperty("--accent-readable", readable(accent, text, [bg, surface]));
  }
  if (button && buttonText) {
    const away = luminance(buttonText) > 0.5 ? [0, 0, 0] : [255, 255, 255];
    root.style.setProperty("--button-readable", readable(button, away, [buttonText]));
  }
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
  readableColours();
}

export function start() {
  applyTheme();
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
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
