"""The Mini App in chromium, as Telegram opens it (a test double of telegram-web-app.js carries the
signed initData, language and theme): tickets, conversation, live replies, offline writes,
escaping, keyboard use, languages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.miniapp.conftest import ANNA, BOT_TOKEN, Stack
from tests.browser.miniapp.miniapp import open_miniapp
from tests.e2e.helpers import rows
from tests.support.pair import WEBAPP_URL
from tma_impl import tables as tma
from tma_impl.miniapp.links import ticket_start_param

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def test_a_customer_opens_a_ticket_and_sees_the_conversation(
    browser: Browser, stack: Stack
) -> None:
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    await app.wait_for_list()
    calls = await app.telegram_calls()
    assert ["ready"] in calls
    assert ["expand"] in calls
    assert await app.main_button() == {"text": "New ticket", "visible": True}

    ticket_id = await app.open_ticket("Payment failed", "I paid but the order is unpaid.")
    await app.wait_for_message("I paid but the order is unpaid.", sender="tma")
    await app.wait_for_status("open")
    assert await app.main_button() == {"text": "Send", "visible": True}
    assert ["BackButton.show"] in await app.telegram_calls()
    [stored] = await rows(stack.pair.tma_runtime, tma.Ticket)
    assert str(stored.id) == ticket_id

    await app.write("Order 1234, paid by card.")
    await app.wait_for_message("Order 1234, paid by card.", sender="tma")

    await app.go_back()
    await app.wait_for_list()
    await app.expect(app.page.locator("a.ticket", has_text="Payment failed")).to_be_visible()
    assert ["BackButton.hide"] in await app.telegram_calls()
    await app.close()


async def test_operator_reply_and_status_changes_appear_live_and_the_customer_closes_and_reopens(
    browser: Browser, stack: Stack
) -> None:
    """Through the real CRM, with the dispatchers run when the test says: nothing is reloaded."""
    pair = stack.pair
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    ticket_id = await app.open_ticket("Payment failed", "I paid but the order is unpaid.")
    await app.page.evaluate("window.__sameDocument = true")  # a reload would lose it
    await app.wait_for_live()
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket_id)

    await pair.operator_replies(crm_ticket["id"], "Looking into it now.")
    await pair.crm.post(
        f"/api/crm/tickets/{crm_ticket['id']}/status",
        json={"status": "in_progress"},
        headers=pair.operator_headers,
    )
    await pair.sync()
    reply = await app.wait_for_message("Looking into it now.", sender="crm")
    await app.expect(reply.locator(".who")).to_have_text(pair.operator_name)
    await app.wait_for_status("in_progress")
    await app.expect(app.page.locator("li.system", has_text="In progress")).to_have_count(1)

    await app.close_ticket()
    await pair.sync()
    assert (await pair.conversation_in_crm(crm_ticket["id"]))["ticket"]["status"] == "closed"

    await app.write("Sorry, one more question.")  # writing reopens, on both sides
    await app.wait_for_message("Sorry, one more question.", sender="tma")
    await app.wait_for_status("open")
    await pair.sync()
    assert (await pair.conversation_in_crm(crm_ticket["id"]))["ticket"]["status"] == "open"
    assert await app.message_texts() == [
        "I paid but the order is unpaid.",
        "Looking into it now.",
        "Sorry, one more question.",
    ]
    assert await app.page.evaluate("window.__sameDocument === true")  # never reloaded
    await app.close()


async def test_a_message_written_offline_is_kept_across_a_reload_and_sent_once(
    browser: Browser, stack: Stack
) -> None:
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    ticket_id = await app.open_ticket("Payment failed", "I paid but the order is unpaid.")
    posted: list[int] = []
    app.page.on(
        "response",
        lambda response: (
            posted.append(response.status)
            if response.request.method == "POST" and response.url.endswith("/messages")
            else None
        ),
    )

    await app.context.set_offline(True)
    await app.write("Written in the tunnel")
    await app.wait_for_message("Written in the tunnel", sender="tma", state="pending")
    stored = await app.page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
    assert "Written in the tunnel" in stored
    assert "hash=" not in stored
    assert "auth_date" not in stored

    # Back online but the writes still fail (a captive portal, say): a reload keeps the message.
    async def refuse(route: object) -> None:
        await route.abort()  # type: ignore[attr-defined]

    await app.page.route("**/api/support/tickets/*/messages", refuse)
    await app.context.set_offline(False)
    await app.page.reload()
    await app.wait_for_conversation(ticket_id)
    await app.wait_for_message("Written in the tunnel", sender="tma", state="pending")
    assert "tgWebAppData" not in app.page.url
    assert "hash=" not in app.page.url

    await app.page.unroute("**/api/support/tickets/*/messages", refuse)
    await app.wait_for_message("Written in the tunnel", sender="tma")  # sent by the page's retry
    assert posted == [201]
    messages = await rows(
        stack.pair.tma_runtime, tma.Message, tma.Message.body == "Written in the tunnel"
    )
    assert len(messages) == 1
    assert await app.page.evaluate("JSON.stringify(Object.assign({}, localStorage))") in {
        "{}",
        '{"support.pending.4242":"[]"}',
    }
    await app.close()


async def test_a_stream_cut_by_the_network_resumes_without_missing_or_repeating(
    browser: Browser, stack: Stack
) -> None:
    pair = stack.pair
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    ticket_id = await app.open_ticket("Payment failed", "first")
    await app.wait_for_live()
    await pair.sync()
    crm_id = (await pair.crm_ticket_for(ticket_id))["id"]

    await app.context.set_offline(True)
    await app.expect(
        app.page.locator("section.conversation-screen[data-live=false]")
    ).to_be_attached()
    for n in range(3):
        await pair.operator_replies(crm_id, f"reply {n}")
    await pair.crm.post(
        f"/api/crm/tickets/{crm_id}/status",
        json={"status": "in_progress"},
        headers=pair.operator_headers,
    )
    await pair.sync()
    await app.context.set_offline(False)
    await app.wait_for_status("in_progress")
    await app.wait_for_message("reply 2", sender="crm")
    await pair.operator_replies(crm_id, "after the reconnect")
    await pair.sync()
    await app.wait_for_message("after the reconnect", sender="crm")
    assert await app.message_texts() == [
        "first",
        "reply 0",
        "reply 1",
        "reply 2",
        "after the reconnect",
    ]
    await app.expect(app.page.locator("li.system")).to_have_count(1)
    await app.close()


async def test_markup_in_subjects_and_messages_is_shown_as_text(
    browser: Browser, stack: Stack
) -> None:
    pair = stack.pair
    attack = "<img src=x onerror=alert(1)>"
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    dialogs: list[str] = []
    app.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    ticket_id = await app.open_ticket(attack, attack)
    await pair.sync()
    crm_id = (await pair.crm_ticket_for(ticket_id))["id"]
    await pair.operator_replies(crm_id, f"<b>{attack}</b>")
    await pair.sync()
    await app.wait_for_message(f"<b>{attack}</b>", sender="crm")
    assert await app.message_texts() == [attack, f"<b>{attack}</b>"]
    await app.expect(app.page.locator("h2.subject")).to_have_text(attack)
    await app.go_back()
    await app.expect(app.page.locator(".ticket-subject")).to_have_text(attack)
    assert await app.page.locator("img, b").count() == 0
    assert dialogs == []
    await app.close()


async def test_a_ticket_can_be_created_with_the_keyboard_alone(
    browser: Browser, stack: Stack
) -> None:
    """Tab, type, Enter: the in-page twin of the MainButton appears when it has focus, and the
    focused control is visibly outlined."""
    app = await open_miniapp(
        browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN, platform="tdesktop"
    )
    await app.wait_for_list()
    keyboard = app.page.keyboard
    await keyboard.press("Tab")
    focused = app.page.locator("#new-ticket")
    await app.expect(focused).to_be_focused()
    await app.expect(focused).to_be_visible()
    outline = await focused.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline == "solid"
    await keyboard.press("Enter")
    await app.expect(app.page.locator("#subject")).to_be_focused()
    await keyboard.type("Keyboard only")
    await keyboard.press("Tab")
    await keyboard.type("No mouse was used.")
    await keyboard.press("Tab")
    await app.expect(app.page.locator("#create")).to_be_focused()
    await keyboard.press("Enter")
    await app.wait_for_conversation()
    await app.wait_for_message("No mouse was used.", sender="tma")
    await app.expect(app.page.locator("h2.subject")).to_have_text("Keyboard only")
    # And a reply: Ctrl+Enter in the reply box sends it.
    await app.page.locator("#reply").focus()
    await keyboard.type("And a reply.")
    await keyboard.press("Control+Enter")
    await app.wait_for_message("And a reply.", sender="tma")
    assert ["MainButton.pressed"] not in await app.telegram_calls()
    await app.close()


async def test_russian_from_the_users_language_code(browser: Browser, stack: Stack) -> None:
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN, language="ru")
    await app.wait_for_list()
    assert await app.page.locator("html").get_attribute("lang") == "ru"
    await app.expect(app.page.locator("h2")).to_have_text("Мои обращения")
    assert (await app.main_button())["text"] == "Новое обращение"
    await app.open_ticket("Не прошла оплата", "Деньги списались, заказ не оплачен.")
    await app.wait_for_status("open")
    await app.expect(app.page.locator(".badge")).to_have_text("Открыто")
    await app.expect(app.page.locator("#status-action")).to_have_text("Закрыть обращение")
    await app.screenshot("miniapp-conversation-ru-light-phone")
    await app.close()

    other = await open_miniapp(
        browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN, language="de"
    )
    await other.wait_for_list()
    await other.expect(other.page.locator("h2")).to_have_text("My tickets")  # English otherwise
    await other.close()


async def test_the_reply_notification_and_a_startapp_link_open_the_ticket(
    browser: Browser, stack: Stack
) -> None:
    pair = stack.pair
    ticket = await pair.open_ticket(subject="Where is my parcel?")
    await pair.sync()
    crm_id = (await pair.crm_ticket_for(ticket["id"]))["id"]
    await pair.operator_replies(crm_id, "It left the warehouse today.")
    await pair.sync()
    [notification] = pair.bot.calls
    url = notification.reply_markup["inline_keyboard"][0][0]["web_app"]["url"]
    assert url.startswith(WEBAPP_URL)
    app = await open_miniapp(
        browser,
        stack.tma_url,
        user=ANNA,
        bot_token=BOT_TOKEN,
        path="/app/" + url[len(WEBAPP_URL) :],
    )
    assert await app.wait_for_conversation() == ticket["id"]
    await app.wait_for_message("It left the warehouse today.", sender="crm")
    await app.go_back()
    await app.wait_for_list()
    await app.close()

    linked = await open_miniapp(
        browser,
        stack.tma_url,
        user=ANNA,
        bot_token=BOT_TOKEN,
        start_param=ticket_start_param(ticket["id"]),
    )
    assert await linked.wait_for_conversation() == ticket["id"]
    await linked.close()


async def test_the_page_follows_a_theme_change(browser: Browser, stack: Stack) -> None:
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN, theme="light")
    await app.wait_for_list()
    background = "getComputedStyle(document.body).backgroundColor"
    assert await app.page.evaluate(background) == "rgb(255, 255, 255)"
    await app.page.evaluate("window.__telegram.setTheme('dark')")
    await app.page.wait_for_function(f"{background} === 'rgb(33, 33, 33)'")
    assert await app.page.locator("html").get_attribute("data-scheme") == "dark"
    await app.close()


async def test_more_tickets_load_on_scroll(browser: Browser, stack: Stack) -> None:
    for n in range(23):
        await stack.pair.open_ticket(subject=f"Ticket {n:02}")
        stack.pair.clock.advance(1)
    app = await open_miniapp(browser, stack.tma_url, user=ANNA, bot_token=BOT_TOKEN)
    await app.wait_for_list()
    tickets = app.page.locator("a.ticket")
    await app.expect(tickets).to_have_count(20)  # one page
    await app.expect(tickets.first).to_contain_text("Ticket 22")  # newest activity first
    await app.page.locator("button.more").scroll_into_view_if_needed()
    await app.expect(tickets).to_have_count(23)
    await app.expect(tickets.last).to_contain_text("Ticket 00")
    await app.expect(app.page.locator("button.more")).to_be_hidden()
    await app.close()
