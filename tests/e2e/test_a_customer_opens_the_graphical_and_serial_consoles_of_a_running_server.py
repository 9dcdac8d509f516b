"""On the real libvirtd with the real console proxy (`manage.py console_proxy`): a customer opens the Console
tab of a running server (the booting test guest) and connects: the noVNC canvas shows the guest's screen (a
screenshot of it holds more than one colour), and the serial console (xterm.js) shows the guest's text,
its login prompt, and answers what is typed and pasted. At 1280x800 and 375x740, in English and in
Indonesian (the account's language): the console fits the page without sideways scrolling, and the pop-out
window connects by itself. A staff member opens the same console from the staff server page. When the
server stops, the page says the console closed, and a new Connect is refused with the panel's reason.
Screenshots go to /tmp/shots/console-*.png."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import libvirt
import pytest
from lxml import etree
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from hypervisor import images
from panel.models import Server, User
from tests import factories, real_workers
from tests.console_proxy import running_proxy

pytestmark = [pytest.mark.e2e, pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 740}}
SHOTS = Path("/tmp/shots")
BOOT_TIMEOUT = 240_000  # ms: the test guest boots under QEMU emulation
SHIFT = 0xFFE1
# Records what the graphical console's paste sends (static/panel/console.js keeps noVNC's RFB object).
RECORD_KEYS = """() => {
  const rfb = document.querySelector("[data-console]").console.connection.rfb;
  const sendKey = rfb.sendKey.bind(rfb);
  window.keysSent = [];
  rfb.sendKey = (keysym, code, down) => {
    window.keysSent.push([keysym, code, down]);
    sendKey(keysym, code, down);
  };
}"""
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
# The distinct colours of a PNG screenshot, counted by the browser (no image library in the test).
COLOURS = """async (data) => {
  const bitmap = await createImageBitmap(await (await fetch("data:image/png;base64," + data)).blob());
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const seen = new Set();
  for (let i = 0; i < pixels.length && seen.size < 50; i += 4) {
    seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
  }
  return seen.size;
}"""
# The serial console's text, from xterm.js's buffer (console.js keeps the terminal on its element).
TERMINAL_TEXT = """() => {
  const terminal = document.querySelector("[data-console]").console.terminal;
  if (!terminal) return "";
  const buffer = terminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""


@pytest.fixture
def libvirtd(transactional_db):
    with real_workers.real_libvirtd() as conn:
        yield conn


@pytest.fixture
def kvm_host(libvirtd):
    return real_workers.kvm_host()


@pytest.fixture
def proxy(settings, tmp_path, libvirtd):
    with running_proxy(settings, tmp_path) as url:
        yield url


@pytest.fixture
def debian(guest_image, settings, libvirtd):
    """The test guest as an image (direct kernel boot, its console on the serial port)."""
    settings.IMAGE_DIR = guest_image.disk.parent
    image = images.register_image(
        "debian-console-e2e", str(guest_image.disk), name="Debian 12", os_family="debian",
        kernel=str(guest_image.kernel), initrd=str(guest_image.initrd), cmdline=guest_image.cmdline,
    )  # fmt: skip
    yield image
    pool = libvirtd.storagePoolLookupByName(real_workers.POOL)
    for kind, _path, checksum in images.files_of(image):
        try:
            pool.storageVolLookupByName(images.volume_name(image, kind, checksum)).delete(0)
        except libvirt.libvirtError:
            pass


def serial_log(conn: libvirt.virConnect, server: Server) -> str:
    """The file the host writes the guest's serial console to."""
    root = etree.fromstring(conn.lookupByUUIDString(str(server.id)).XMLDesc(0).encode())
    return root.find("devices/serial/log").get("file")


def wait_for_boot(log: Path) -> None:
    """Until the guest's serial log has cloud-init's last line ("Cloud-init v. … finished at …")."""
    deadline = time.monotonic() + BOOT_TIMEOUT / 1000
    while not re.search(rb"Cloud-init v\. \S+ finished at", log.read_bytes()):
        assert time.monotonic() < deadline, f"cloud-init did not finish:\n{log.read_bytes()[-1500:]!r}"
        time.sleep(1)


def log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    if user.is_panel_staff:
        expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
        page.fill("input[name=code]", factories.totp_code(user))
        page.locator("form button[type=submit]").last.click()
    expect(page).to_have_url(re.compile(r"/servers/$"))


def colours(page: Page, png: bytes) -> int:
    return page.evaluate(COLOURS, base64.b64encode(png).decode())


def screen_shows_something(page: Page, timeout: float = 60) -> int:
    """Wait until the noVNC canvas shows more than one colour; the number of colours seen."""
    canvas = page.locator("[data-console-screen] canvas")
    expect(canvas).to_be_visible()
    count = 0
    for _ in range(int(timeout * 2)):
        count = colours(page, canvas.screenshot())
        if count > 1:
            return count
        page.wait_for_timeout(500)
    pytest.fail(f"the console's canvas stayed one colour ({count})")


def terminal_shows(
    page: Page,
    pattern: str,
    timeout: float = BOOT_TIMEOUT,
    *,
    first_poke: float | None = 1_000,
    every: float | None = None,
) -> str:
    """Wait until the serial console's text matches `pattern`, pressing Enter in it when it does not (the
    prompt may have been printed before the console was opened): after `first_poke` ms, then at growing
    intervals up to ten seconds (`every` ms instead, when given); `first_poke=None`: never."""
    expression = f"() => new RegExp({pattern!r}, 'm').test(({TERMINAL_TEXT})())"
    deadline = time.monotonic() + timeout / 1000
    interval = first_poke if first_poke is not None else timeout
    while time.monotonic() < deadline:
        try:
            page.wait_for_function(expression, timeout=interval)
            return page.evaluate(TERMINAL_TEXT)
        except PlaywrightTimeoutError:  # not yet: poke the guest
            if first_poke is None:
                break
            page.locator("[data-console-screen] .xterm").click()
            page.keyboard.press("Enter")
            interval = every or min(interval * 2, 10_000)
    pytest.fail(f"the serial console never showed {pattern!r}:\n{page.evaluate(TERMINAL_TEXT)[-1500:]}")


def at_login_prompt(page: Page, timeout: float) -> None:
    """Wait until the guest's last line is its login prompt. Whatever an earlier round left (a password
    prompt, a failed login's pause) is answered with Enter, at most every six seconds: longer than login's
    three-second pause after a wrong password, so that no Enter lands between two prompts and is taken as a
    user name or a password."""
    terminal_shows(page, r"login:\s*(?![\s\S]*\S)", timeout, first_poke=6_000, every=6_000)


def fits(page: Page, where: str) -> None:
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{where}: the page scrolls sideways"
    screen = page.locator("[data-console-screen]").bounding_box()
    assert screen["x"] >= 0 and screen["x"] + screen["width"] <= page.viewport_size["width"] + 0.5, (
        where,
        screen,
    )


def test_a_customer_opens_both_consoles_of_a_running_server(
    browser, live_server, proxy, libvirtd, kvm_host, debian
):
    SHOTS.mkdir(exist_ok=True)
    customer = factories.make_user(email="sari.wulandari@example.com", password=PASSWORD, language="en")
    plan = factories.make_plan(slug="console-e2e", vcpus=1, memory_mib=512, disk_gib=3)
    server = factories.make_real_server(
        customer, plan=plan, image=debian, region=kvm_host.region, name="konsol.example.com",
        ssh_keys=[factories.make_ssh_key(customer)],
    )  # fmt: skip
    base = live_server.url
    rounds = [("en", "desktop"), ("en", "phone"), ("id", "desktop"), ("id", "phone")]
    for number, (language, size) in enumerate(rounds):
        User.objects.filter(pk=customer.pk).update(language=language)
        context = browser.new_context(viewport=SIZES[size], locale="en-US")
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            log_in(page, base, customer)

            # The Console tab, from the server page; the graphical console first.
            page.goto(f"{base}/servers/{server.pk}/")
            page.locator("#console-tab").click()
            page.wait_for_url(f"**/servers/{server.pk}/console/")
            assert page.locator("html").get_attribute("lang") == language
            page.locator("[data-console-action=connect]").click()
            status = page.locator("[data-console-status]")
            expect(status).to_have_text("Connected." if language == "en" else re.compile(r".+"))
            expect(page.locator("[data-console-action=disconnect]")).to_be_visible()
            screen_shows_something(page)
            fits(page, f"vnc {size} {language}")
            expect(page.locator("[data-console-action=ctrl-alt-del]")).to_be_enabled()
            page.screenshot(path=SHOTS / f"console-vnc-{size}-{language}.png", full_page=True)

            # Disconnect, then Reconnect with a fresh token.
            page.locator("[data-console-action=disconnect]").click()
            expect(page.locator("[data-console-screen] canvas")).to_have_count(0)
            expect(page.locator("[data-console-action=connect]")).to_be_visible()
            page.locator("[data-console-action=connect]").click()
            screen_shows_something(page)

            # The serial console: the guest's text, and what is typed and pasted. The first time, once the
            # guest's boot is over: cloud-init's lines, written to the console until it finishes, would
            # fall between the typed name and the password prompt.
            if number == 0:
                wait_for_boot(Path(serial_log(libvirtd, server)))
            page.locator(".segmented a").nth(1).click()
            page.wait_for_url("**/console/?type=serial")
            page.locator("[data-console-action=connect]").click()
            at_login_prompt(page, 90_000)
            fits(page, f"serial {size} {language}")
            page.locator(".console__paste summary").click()
            page.fill("[data-console-paste]", f"konsol{number}\n")
            page.locator("[data-console-action=paste]").click()
            terminal_shows(page, rf"konsol{number}\s*\n.*Password:", 30_000, first_poke=None)
            page.screenshot(path=SHOTS / f"console-serial-{size}-{language}.png", full_page=True)

            if number == 0:
                # Pop out: the window connects by itself; the page lets it have the console.
                with page.expect_popup() as popup_info:
                    page.locator("[data-console-action=popout]").click()
                popup = popup_info.value
                expect(popup.locator("[data-console-status]")).to_have_text("Connected.")
                terminal_shows(popup, r"\S", 30_000)
                expect(page.locator("[data-console-action=connect]")).to_be_visible()
                popup.set_viewport_size({"width": 900, "height": 640})
                popup.screenshot(path=SHOTS / "console-serial-window-en.png")
                popup.close()
        finally:
            context.close()

    # Staff open the same console from the staff server page.
    staff = factories.make_user(User.Role.STAFF, email="staf@example.com", password=PASSWORD, language="id")
    context = browser.new_context(viewport=SIZES["desktop"], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        log_in(page, base, staff)
        page.goto(f"{base}/staff/servers/{server.pk}/")
        page.locator("#console-tab").click()
        page.wait_for_url(f"**/staff/servers/{server.pk}/console/")
        page.locator("[data-console-action=connect]").click()
        screen_shows_something(page)
        page.screenshot(path=SHOTS / "console-vnc-staff-desktop-id.png", full_page=True)

        # Pasted text is typed key by key (Shift held for capitals and symbols; a new line is Enter).
        page.evaluate(RECORD_KEYS)
        page.locator(".console__paste summary").click()
        page.fill("[data-console-paste]", "Ab!\n")
        page.locator("[data-console-action=paste]").click()
        assert page.evaluate("() => window.keysSent") == [
            [SHIFT, "ShiftLeft", True], [ord("A"), "KeyA", True], [ord("A"), "KeyA", False],
            [SHIFT, "ShiftLeft", False],
            [ord("b"), "KeyB", True], [ord("b"), "KeyB", False],
            [SHIFT, "ShiftLeft", True], [ord("!"), "Digit1", True], [ord("!"), "Digit1", False],
            [SHIFT, "ShiftLeft", False],
            [0xFF0D, "Enter", True], [0xFF0D, "Enter", False],
        ]  # fmt: skip

        # Ctrl-Alt-Del reaches the guest: it reboots (its serial console log says so).
        log = Path(serial_log(libvirtd, server))
        page.locator("[data-console-action=ctrl-alt-del]").click()
        deadline = time.monotonic() + 180
        while b"reboot: Restarting system" not in log.read_bytes():
            assert time.monotonic() < deadline, "the guest did not reboot after Ctrl-Alt-Del"
            time.sleep(1)
    finally:
        context.close()

    # The server stops while its console is open: the page says the console closed, and Connect is refused.
    User.objects.filter(pk=customer.pk).update(language="en")
    context = browser.new_context(viewport=SIZES["desktop"], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        log_in(page, base, customer)
        page.goto(f"{base}/servers/{server.pk}/console/")
        page.locator("[data-console-action=connect]").click()
        screen_shows_something(page)
        Server.objects.filter(pk=server.pk).update(status=Server.Status.STOPPED)
        real_workers.find_domain(libvirtd, str(server.id)).destroy()
        status = page.locator("[data-console-status]")
        expect(status).to_contain_text("The console closed", timeout=30_000)
        page.locator("[data-console-action=connect]").click()
        expect(status).to_have_text("The server is not running: start it to open its console.")
        page.screenshot(path=SHOTS / "console-stopped-desktop-en.png", full_page=True)
        page.reload()
        expect(page.locator("#console-not-running")).to_be_visible()
        expect(page.locator("[data-console-action=connect]")).to_have_count(0)
        page.screenshot(path=SHOTS / "console-not-running-desktop-en.png", full_page=True)
    finally:
        context.close()
