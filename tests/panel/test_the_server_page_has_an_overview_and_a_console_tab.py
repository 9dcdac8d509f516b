"""The server page has two tabs under the same header, each a page of its own: Overview (the page as it
was) and Console. The Console tab shows the graphical console (the default) or the serial one, chosen with
links, with the controls its script wires up (Connect, Disconnect, Ctrl-Alt-Del for the graphical one, full
screen, pop out, paste) and the libraries it loads from the panel's own static files; the pop-out window is a
bare page that connects by itself. Every text the script shows comes from the page, in the reader's
language."""

from __future__ import annotations

import re

import pytest

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog):
    return factories.make_server(customer, catalog, name="web1.example.com")


def current_tab(html: str) -> list[str]:
    return re.findall(r'class="page-tabs__tab"[^>]*aria-current="page">([^<]+)<', html)


def test_the_overview_and_console_tabs(client, customer, server):
    client.force_login(customer)
    overview = client.get(f"/servers/{server.pk}/").content.decode()
    assert current_tab(overview) == ["Overview"]
    assert f'href="/servers/{server.pk}/console/"' in overview

    page = client.get(f"/servers/{server.pk}/console/")
    html = page.content.decode()
    assert current_tab(html) == ["Console"]
    assert "<h1>web1.example.com</h1>" in html  # the same header
    assert 'aria-current="page">Servers<' in html  # the top bar's Servers tab
    assert 'data-type="vnc"' in html
    for action in ("connect", "disconnect", "ctrl-alt-del", "fullscreen", "popout", "paste"):
        assert f'data-console-action="{action}"' in html, action
    assert '<script type="module" src="/static/panel/console.js">' in html
    assert 'data-rfb-src="/static/vendor/novnc/core/rfb.js"' in html
    assert f'data-token-url="/servers/{server.pk}/console/vnc/token/"' in html
    assert f'data-window-url="/servers/{server.pk}/console/vnc/window/"' in html
    assert "cdn" not in html.lower()


def test_the_serial_console_is_chosen_with_a_link(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/console/?type=serial").content.decode()
    assert 'data-type="serial"' in html
    assert 'data-console-action="ctrl-alt-del"' not in html
    assert "/static/vendor/xterm/css/xterm.css" in html
    assert 'data-xterm-src="/static/vendor/xterm/lib/xterm.mjs"' in html
    assert re.search(r'href="\?type=vnc"|href="/servers/[^"]+/console/\?type=vnc"', html)
    # Anything else is the graphical console.
    assert 'data-type="vnc"' in client.get(f"/servers/{server.pk}/console/?type=x").content.decode()


def test_the_console_window_connects_by_itself(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/console/serial/window/").content.decode()
    assert "data-autoconnect" in html
    assert 'class="topbar' not in html  # a bare page
    assert 'data-console-action="popout"' not in html
    assert "<title>web1.example.com · Serial console</title>" in html


def test_the_scripts_texts_are_in_the_readers_language(client, catalog):
    customer = factories.make_user(language="id")
    server = factories.make_server(customer, catalog)
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/console/").content.decode()
    texts = dict(re.findall(r'data-text-([a-z-]+)="([^"]*)"', html))
    assert {"connect", "reconnect", "connecting", "connected", "closed", "unreachable", "failed"} <= set(
        texts
    )
    assert all(texts.values())
    assert "%(reason)s" in texts["closed"]
    assert '<html lang="id">' in html
