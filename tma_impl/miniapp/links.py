"""How a link names a ticket for the Mini App, in the two ways Telegram opens it.

A `web_app` button opens the page's URL as given: `<webapp_url>?ticket=<id>`. A
`t.me/<bot>/<app>?startapp=<param>` link hands the page a start parameter instead (as
`tgWebAppStartParam` and `initDataUnsafe.start_param`), which allows only A-Z a-z 0-9 _ -, up to
64 characters: `ticket_<id>`. The page (static/app.js, `ticketFromLaunch`) reads both.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

START_PARAM_PREFIX = "ticket_"


def ticket_url(webapp_url: str, ticket_id: uuid.UUID | str) -> str:
    separator = "&" if "?" in webapp_url else "?"
    return f"{webapp_url}{separator}{urlencode({'ticket': str(ticket_id)})}"


def ticket_start_param(ticket_id: uuid.UUID | str) -> str:
    return f"{START_PARAM_PREFIX}{ticket_id}"
