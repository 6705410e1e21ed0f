"""Both people at once: a customer in the Mini App and an operator in the console, each in their
own browser context, talking through both backends wired over real HTTP.

The dispatchers run when the test says (`pair.sync()`), so every delivery happens at a known
point; everything else (the console's queue, both pages' streams) is live: nothing is reloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from crm_impl.settings import CrmSettings
from integration_kit.narrowing import narrowed
from tests.browser.console.support import sign_in
from tests.browser.miniapp.conftest import ANNA, BOT_TOKEN
from tests.browser.miniapp.miniapp import open_miniapp
from tests.browser.support import live_server
from tests.support.pair import wired_pair

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def test_a_customer_and_an_operator_talk_through_both_pages(
    browser: Browser, tmp_path: Path
) -> None:
    async with wired_pair("sqlite", tmp_path, live_poll_seconds=0.2) as pair:
        crm_settings = narrowed(pair.crm_runtime.settings, CrmSettings)
        # The console's streams look often and end soon, so the servers can stop after the test.
        crm_settings.console_poll_seconds = 0.05
        crm_settings.console_stream_seconds = 3
        async with (
            live_server(pair.tma_app) as tma_url,
            live_server(pair.crm_app) as crm_url,
        ):
            operator = await sign_in(browser, crm_url, pair.operator_token)
            customer = await open_miniapp(browser, tma_url, user=ANNA, bot_token=BOT_TOKEN)
            try:
                # The customer opens a ticket; it appears in the open console, no reload.
                await customer.open_ticket("My parcel is lost", "Order 778 never arrived.")
                await pair.sync()
                await operator.wait_for_ticket("My parcel is lost")
                await operator.open_ticket("My parcel is lost")
                await operator.wait_for_message("Order 778 never arrived.")

                # The operator replies: the reply and the in-progress status reach the Mini App.
                await operator.reply("We are tracing it now.")
                await pair.sync()
                await customer.wait_for_message("We are tracing it now.")
                await customer.wait_for_status("in_progress")
                await operator.wait_for_delivery("We are tracing it now.", "delivered")

                # The operator closes the ticket; the customer sees it closed.
                await operator.set_status("closed")
                await pair.sync()
                await customer.wait_for_status("closed")

                # Writing on a closed ticket reopens it on both sides.
                await customer.write("It came today, thank you!")
                await customer.wait_for_message("It came today, thank you!")  # stored by the TMA
                await pair.sync()
                await customer.wait_for_status("open")
                await operator.wait_for_message("It came today, thank you!")
                await operator.wait_for_status("open")
            finally:
                await customer.close()
                await operator.close()
