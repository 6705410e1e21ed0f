"""A test double of Telegram's `telegram-web-app.js`, served at its real URL by routing
https://telegram.org/** in the browser context (tests/browser/support.keep_on_this_machine).

It carries what a Telegram client hands a Mini App: signed initData for a test user, the start
parameter, the colour scheme and theme colours; it records what the page does with MainButton and
BackButton (`window.__telegram.calls`) and lets a test press them or change the theme.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tma_impl.telegram import TelegramUser, mint_init_data

# Telegram's own default colours (Telegram Web's day and night themes), as themeParams.
LIGHT = {
    "bg_color": "#ffffff",
    "text_color": "#000000",
    "hint_color": "#707579",
    "link_color": "#3390ec",
    "button_color": "#3390ec",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#f4f4f5",
    "header_bg_color": "#ffffff",
    "accent_text_color": "#3390ec",
    "section_bg_color": "#ffffff",
    "destructive_text_color": "#df3f40",
}
DARK = {
    "bg_color": "#212121",
    "text_color": "#ffffff",
    "hint_color": "#aaaaaa",
    "link_color": "#8774e1",
    "button_color": "#8774e1",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#0f0f0f",
    "header_bg_color": "#212121",
    "accent_text_color": "#8774e1",
    "section_bg_color": "#212121",
    "destructive_text_color": "#ff595a",
}
THEMES = {"light": LIGHT, "dark": DARK}


@dataclass
class TelegramLaunch:
    """What the double tells the page about the user and the client."""

    bot_token: str
    user: TelegramUser
    theme: str = "light"
    start_param: str | None = None
    platform: str = "android"
    auth_date: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def init_data(self) -> str:
        return mint_init_data(
            bot_token=self.bot_token,
            user=self.user,
            auth_date=self.auth_date or datetime.now(UTC),
            start_param=self.start_param,
        )

    def script(self) -> str:
        init_data = self.init_data()
        user: dict[str, Any] = {"id": self.user.id, "first_name": self.user.first_name}
        if self.user.language_code:
            user["language_code"] = self.user.language_code
        config = {
            "initData": init_data,
            "initDataUnsafe": {
                "user": user,
                **({"start_param": self.start_param} if self.start_param else {}),
            },
            "themeParams": THEMES[self.theme],
            "colorScheme": self.theme,
            "platform": self.platform,
            "themes": THEMES,
        }
        return SCRIPT.replace("__CONFIG__", json.dumps(config))


SCRIPT = """
(() => {
  const config = __CONFIG__;
  const calls = [];
  const handlers = {};
  const record = (name, ...args) => calls.push([name, ...args]);
  function control(name, extra) {
    const clicks = new Set();
    const button = {
      isVisible: false,
      onClick(fn) { clicks.add(fn); record(`${name}.onClick`); return button; },
      offClick(fn) { clicks.delete(fn); record(`${name}.offClick`); return button; },
      show() { button.isVisible = true; record(`${name}.show`); return button; },
      hide() { button.isVisible = false; record(`${name}.hide`); return button; },
      _press() { record(`${name}.pressed`); for (const fn of [...clicks]) fn(); },
      ...extra,
    };
    return button;
  }
  const mainButton = control("MainButton", {
    text: "", isActive: true, isProgressVisible: false,
    setText(text) {
      mainButton.text = text; record("MainButton.setText", text); return mainButton;
    },
    enable() { mainButton.isActive = true; return mainButton; },
    disable() { mainButton.isActive = false; return mainButton; },
    showProgress() { mainButton.isProgressVisible = true; return mainButton; },
    hideProgress() { mainButton.isProgressVisible = false; return mainButton; },
  });
  const backButton = control("BackButton", {});
  const webApp = {
    initData: config.initData,
    initDataUnsafe: config.initDataUnsafe,
    version: "7.0",
    platform: config.platform,
    colorScheme: config.colorScheme,
    themeParams: { ...config.themeParams },
    isExpanded: false,
    MainButton: mainButton,
    BackButton: backButton,
    isVersionAtLeast: (version) => parseFloat(version) <= 7.0,
    ready() { record("ready"); },
    expand() { webApp.isExpanded = true; record("expand"); },
    close() { record("close"); },
    onEvent(event, fn) { (handlers[event] ||= new Set()).add(fn); },
    offEvent(event, fn) { handlers[event] && handlers[event].delete(fn); },
  };
  window.Telegram = { WebApp: webApp };
  window.__telegram = {
    calls,
    mainButton,
    backButton,
    pressMain() { mainButton._press(); },
    pressBack() { backButton._press(); },
    setTheme(scheme) {
      webApp.colorScheme = scheme;
      webApp.themeParams = { ...config.themes[scheme] };
      for (const fn of handlers.themeChanged || []) fn.call(webApp);
    },
  };
})();
"""
