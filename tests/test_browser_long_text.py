"""Long text and error pages in a real browser: a 200,000-character subject, a 300-character address
and a long URL keep the pages inside the viewport at 1280 and 390 px; the 404, 403, 500 and
removed-attachment pages; an over-long search; the favicon."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conduit.models import Attachment
from conduit.services import do_create_api_token
from conduit.tenancy import system_scope
from tests.conftest import Tenant, make_message, shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SUBJECT = "Renewal terms " + "x" * 200_000
ADDRESS = "a" * 290 + "@acme.example"
URL = "https://docs.acme.example/contracts/" + "7f3a9c" * 400
WIDTHS = (1280, 390)


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, selector
    return dict(found)


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"]
        and inner["y"] >= outer["y"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5
    )


@pytest.fixture
def longtext(make_workspace: Callable[..., Tenant]) -> Tenant:
    return make_workspace("northwind", email="accounts-payable-" + "p" * 110 + "@northwind.example")


def test_long_subject_address_and_url_stay_inside_the_viewport(
    page: Any, live_server: Any, longtext: Tenant, tmp_path: Path
) -> None:
    for n in range(3):
        make_message(
            longtext.workspace, f"n{n}@x", subject=f"Kick-off call {n}", from_address="maya@acme.example"
        )
    long = make_message(
        longtext.workspace,
        "long@x",
        subject=SUBJECT,
        from_address=ADDRESS,
        to_addresses=[ADDRESS, "sam@northwind.example"],
        body_text=f"Hello,\nthe signed contract is at {URL}\nThanks.",
    )
    do_create_api_token(longtext.workspace, "mail-gateway-" + "g" * 87, actor=longtext.user)
    url = live_server.url
    sign_in(page, url, longtext)

    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 860})
        page.goto(f"{url}/messages/")
        assert page_width(page) <= width
        link = page.locator("td.subject a").first
        assert link.get_attribute("title").startswith("Renewal terms xxx")  # the cut text, in full on hover
        assert inside(box(page, "td.subject a"), box(page, "section.card"))
        shot(page, tmp_path, f"long-01-list-{width}")

        page.goto(f"{url}/messages/{long.pk}/")
        assert page_width(page) <= width
        card, heading = box(page, "section.card"), box(page, "h1.subject")
        assert inside(heading, card)
        assert page.evaluate("document.querySelector('h1.subject').textContent.length") == len(SUBJECT)
        assert inside(box(page, "pre.body"), card) and URL in page.locator("pre.body").inner_text()
        assert inside(box(page, ".headers"), card)
        shot(page, tmp_path, f"long-02-detail-{width}")

        page.goto(f"{url}/settings/")
        assert page_width(page) <= width
        assert page.locator("#api-tokens td .cut").first.get_attribute("title").startswith("mail-gateway-ggg")
        shot(page, tmp_path, f"long-03-settings-{width}")

    # a search longer than the box allows (a pasted link) gets the page and one sentence
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(f"{url}/messages/")
    assert page.locator("input[name=q]").get_attribute("maxlength") == "200"
    response = page.goto(f"{url}/messages/?q={'renewal' * 40}")
    assert response is not None and response.status == 400
    assert (
        "Search for at most 200 characters; this search has 280." in page.locator("[role=alert]").inner_text()
    )
    shot(page, tmp_path, "long-04-search-refused")


@pytest.fixture
def failing_urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.error_page_urls"


def test_error_pages_and_the_removed_attachment(
    page: Any, live_server: Any, alice: Tenant, failing_urls: None, tmp_path: Path
) -> None:
    url = live_server.url
    response = page.goto(f"{url}/no-such-page/")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "This page does not exist"
    shot(page, tmp_path, "error-404-signed-out")

    icon = page.request.get(f"{url}/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/svg")
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"

    message = make_message(alice.workspace, "deck@x", subject="Q3 pricing")
    with system_scope():
        attachment = Attachment.objects.create(
            workspace=alice.workspace,
            message=message,
            filename="q3-pricing-deck.pdf",
            content_type="application/pdf",
            size=18_000,
            removed_at=datetime(2026, 3, 4, 3, 30, tzinfo=UTC),
        )
    sign_in(page, url, alice)
    page.goto(f"{url}/messages/{message.pk}/")
    assert "removed by the retention policy on 4 Mar 2026" in page.locator(".attachments").inner_text()
    response = page.goto(f"{url}/attachments/{attachment.pk}/")  # e.g. a link saved before the purge
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "This attachment was removed"
    assert page.locator("[data-removed-at]").inner_text() == "4 Mar 2026, 03:30 UTC"
    shot(page, tmp_path, "error-removed-attachment")
    page.click("text=Back to the message")
    page.wait_for_url(f"{url}/messages/{message.pk}/")

    page.goto(f"{url}/messages/999999/")
    assert page.locator("h1").inner_text() == "This page does not exist"
    shot(page, tmp_path, "error-404-signed-in")

    response = page.goto(f"{url}/forbidden/")
    assert response is not None and response.status == 403
    assert page.locator("[data-reason]").inner_text() == "Only workspace owners and admins can do this."
    shot(page, tmp_path, "error-403")

    response = page.goto(f"{url}/boom/")
    assert response is not None and response.status == 500
    assert page.locator("h1").inner_text() == "Something went wrong"
    shot(page, tmp_path, "error-500")
