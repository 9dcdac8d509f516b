"""Local stand-ins for Midtrans and Xendit that speak their documented HTTP APIs: test infrastructure only
(nothing in the product knows them; billing.providers is pointed at them through its settings).

Each is a threaded HTTP server on 127.0.0.1 and a free port, with its state in memory:

- `MidtransServer`: Snap (POST /snap/v1/transactions: Basic auth with the server key,
  `transaction_details.order_id/gross_amount`, answer 201 `token` and `redirect_url`), the hosted Snap page
  at the redirect_url (Pay, Cancel), the Core API's GET /v2/{order_id}/status (404 "Transaction doesn't
  exist." until the customer chose how to pay), and HTTP notifications signed with `signature_key` =
  SHA-512(order_id + status_code + gross_amount + server key).
- `XenditServer`: the Invoices API (POST /v2/invoices, GET /v2/invoices/{id}, GET
  /v2/invoices?external_id=...: Basic auth with the secret key), the hosted invoice page at the invoice_url
  (Pay), and invoice callbacks carrying the `x-callback-token` header.

Wrong keys get the provider's documented 401 answer, malformed bodies its documented 400 answer.

Notifications go to `webhook_url` (what the provider's dashboard holds) through `deliver(url, headers,
body) -> HTTP status`: real HTTP by default; tests/billing/conftest.py delivers through Django's test
Client instead. Test controls, in Python (a reference is our order id / external_id):

    pay(reference)                  the customer paid (Midtrans: settlement with a transaction_id;
                                    Xendit: PAID); notified unless notify=False; returns the transaction
                                    id (Midtrans) or the invoice id (Xendit)
    expire(reference), cancel(...)  the provider expired (Midtrans: also cancelled) it, and notifies
    choose(reference)               Midtrans: the customer picked a virtual account (pending)
    set_status(reference, status, amount=..., currency=...)
                                    what the status API answers from now on, without a notification
    notify(reference, forge=False, **fields)
                                    send a notification of the current state, some fields overridden
                                    (an out-of-order or lying one); forge=True signs it with a wrong key
                                    (Midtrans) or sends a wrong x-callback-token (Xendit)
    resend(index=-1)                send a notification again, byte for byte (a provider's retry)
    drop_notifications = True       notifications are recorded but not sent (a missed webhook)
    outage()                        context manager: every request gets 503 with an HTML body
    status_barrier = Barrier(n)     status requests wait for each other, n at a time (a race)
    requests, notifications, created(reference)
                                    what the server received (and answered: `reply()`); what it sent
                                    and what the panel answered; the JSON body of the request that made
                                    a checkout
    errors                          tracebacks of anything that failed inside the server (a fixture checks
                                    it is empty)
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import requests

JAKARTA = timezone(timedelta(hours=7))

Deliver = Callable[[str, dict[str, str], bytes], int]


def deliver_over_http(url: str, headers: dict[str, str], body: bytes) -> int:
    """POST a notification to the panel over real HTTP (a live server) and return its status code."""
    return requests.post(url, data=body, headers=headers, timeout=30).status_code


@dataclass
class Received:
    """One request the server received, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int = 0  # what the server answered, and with what
    response: bytes = b""

    def json(self):
        """The request's JSON body."""
        return json.loads(self.body or b"null")

    def reply(self):
        """The JSON the server answered."""
        return json.loads(self.response or b"null")


@dataclass
class Notification:
    """One notification the server sent (or dropped: `answer` None) and what the panel answered."""

    url: str
    headers: dict[str, str]
    body: bytes
    answer: int | None

    def json(self) -> dict:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, data) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _html(status: int, title: str, body: str) -> Answer:
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}"
        "button{font-size:1.1rem;padding:.6rem 1.4rem;margin:.3rem}</style></head>"
        f"<body>{body}</body></html>"
    )
    return status, {"Content-Type": "text/html; charset=utf-8"}, page.encode()


def _redirect(url: str) -> Answer:
    return 303, {"Location": url}, b""


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _rupiah(amount: Decimal) -> str:
    return f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ProviderServer:
    """The HTTP plumbing both stand-ins share: a ThreadingHTTPServer in a daemon thread, the record of
    requests and notifications, outages, and the delivery of notifications."""

    name = ""

    def __init__(self, key: str, *, webhook_url: str = "", deliver: Deliver = deliver_over_http):
        self.key = key
        self.webhook_url = webhook_url
        self.deliver = deliver
        self.drop_notifications = False
        self.requests: list[Received] = []
        self.notifications: list[Notification] = []
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._down = False
        # Set to a threading.Barrier(n): status requests wait until n of them are in (racing callers).
        self.status_barrier: threading.Barrier | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- running

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ProviderServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the loop's next turn (half a second by default).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name=f"{self.name}-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Inside the block every request is answered 503 with an HTML page (a load balancer in front of
        a provider that is down)."""
        self._down = True
        try:
            yield
        finally:
            self._down = False

    def deliver_to(self, base_url: str) -> None:
        """Send notifications over real HTTP to `<base_url>/billing/webhooks/<name>/` (a live server)."""
        self.webhook_url = f"{base_url.rstrip('/')}/billing/webhooks/{self.name}/"
        self.deliver = deliver_over_http

    def received(self, method: str, path_prefix: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- notifications

    def _send(self, body: dict, headers: dict[str, str]) -> Notification:
        """Send one notification (outside the lock: the panel asks the status API while answering)."""
        raw = json.dumps(body).encode()
        return self._post(raw, {"Content-Type": "application/json", **headers})

    def _post(self, raw: bytes, headers: dict[str, str]) -> Notification:
        if self.drop_notifications or not self.webhook_url:
            note = Notification(self.webhook_url, headers, raw, None)
        else:
            note = Notification(self.webhook_url, headers, raw, self.deliver(self.webhook_url, headers, raw))
        with self._lock:
            self.notifications.append(note)
        return note

    def resend(self, index: int = -1) -> Notification:
        """Send a notification sent (or dropped) before again, the same bytes and headers."""
        with self._lock:
            previous = self.notifications[index]
        return self._post(previous.body, previous.headers)

    # -- HTTP

    def _meet(self) -> None:
        if self.status_barrier is not None:
            self.status_barrier.wait()

    def _authorised(self, request: Received) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.key}:".encode()).decode()
        return secrets.compare_digest(request.headers.get("authorization", ""), expected)

    def route(self, request: Received) -> Answer:
        raise NotImplementedError

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Received(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                )
                if server._down:
                    answer = _html(
                        503, "503 Service Unavailable", "<h1>503 Service Temporarily Unavailable</h1>"
                    )
                else:
                    try:
                        answer = server.route(request)
                    except Exception:
                        server.errors.append(traceback.format_exc())
                        answer = _json(500, {"error": "the test server failed; see server.errors"})
                status, headers, content = answer
                request.status, request.response = status, content
                with server._lock:
                    server.requests.append(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _serve

        return Handler


# --- Midtrans ---------------------------------------------------------------------------------------------

# The status_code Midtrans gives each transaction_status (in notifications and the status API).
MIDTRANS_STATUS_CODES = {
    "capture": "200",
    "settlement": "200",
    "cancel": "200",
    "refund": "200",
    "partial_refund": "200",
    "chargeback": "200",
    "pending": "201",
    "authorize": "201",
    "deny": "202",
    "failure": "202",
    "expire": "407",
}
MIDTRANS_UNAUTHORISED = [
    "Access denied due to unauthorized transaction, please check client or server key",
    "Visit https://snap-docs.midtrans.com/#request-headers for more details",
]
MIDTRANS_ORDER_ID = re.compile(r"^[A-Za-z0-9\-_~.]{1,50}$")


@dataclass
class MidtransTransaction:
    order_id: str
    gross_amount: Decimal
    token: str
    finish_url: str
    request: dict
    currency: str = "IDR"
    # "" until the customer picks a way to pay: Snap makes the transaction then (the status API says 404).
    status: str = ""
    transaction_id: str = ""
    payment_type: str = ""
    fraud_status: str = ""
    transaction_time: datetime | None = None
    settlement_time: datetime | None = None

    @property
    def status_code(self) -> str:
        return MIDTRANS_STATUS_CODES.get(self.status, "201")

    @property
    def gross(self) -> str:
        """The amount as Midtrans writes it: "150000.00"."""
        return f"{self.gross_amount:.2f}"


def _midtrans_time(moment: datetime | None) -> str:
    return moment.astimezone(JAKARTA).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


class MidtransServer(ProviderServer):
    """Midtrans Snap and the Core API's status, one server for both base URLs (MIDTRANS_SNAP_URL and
    MIDTRANS_API_URL point at it)."""

    name = "midtrans"

    def __init__(self, key: str | None = None, **kwargs):
        super().__init__(key or f"SB-Mid-server-{secrets.token_urlsafe(18)}", **kwargs)
        self.merchant_id = "G" + str(secrets.randbelow(10**9)).zfill(9)
        self.transactions: dict[str, MidtransTransaction] = {}

    # -- test controls

    def transaction(self, order_id: str) -> MidtransTransaction:
        with self._lock:
            return self.transactions[order_id]

    def created(self, order_id: str) -> dict:
        return self.transaction(order_id).request

    def _move(self, order_id: str, status: str, **fields) -> MidtransTransaction:
        with self._lock:
            txn = self.transactions[order_id]
            now = datetime.now(UTC)
            if not txn.transaction_id:
                txn.transaction_id = str(uuid.uuid4())
                txn.transaction_time = now
                txn.payment_type = txn.payment_type or "bank_transfer"
            txn.status = status
            txn.fraud_status = "accept"
            if status == "settlement" and txn.settlement_time is None:
                txn.settlement_time = now
            for name, value in fields.items():
                if value is not None:
                    setattr(txn, name, value)
            return txn

    def choose(self, order_id: str, payment_type: str = "bank_transfer", *, notify: bool = True) -> str:
        """The customer picked a way to pay (a virtual account): the transaction exists, pending."""
        txn = self._move(order_id, "pending", payment_type=payment_type)
        if notify:
            self.notify(order_id)
        return txn.transaction_id

    def pay(
        self,
        order_id: str,
        *,
        notify: bool = True,
        amount: Decimal | None = None,
        currency: str | None = None,
    ) -> str:
        """The customer paid: settlement. Returns the transaction_id."""
        txn = self._move(order_id, "settlement", gross_amount=amount, currency=currency)
        if notify:
            self.notify(order_id)
        return txn.transaction_id

    def expire(self, order_id: str, *, notify: bool = True) -> None:
        self._move(order_id, "expire")
        if notify:
            self.notify(order_id)

    def cancel(self, order_id: str, *, notify: bool = True) -> None:
        self._move(order_id, "cancel")
        if notify:
            self.notify(order_id)

    def set_status(
        self,
        order_id: str,
        status: str,
        *,
        amount: Decimal | None = None,
        currency: str | None = None,
        fraud_status: str | None = None,
    ) -> MidtransTransaction:
        """What the status API answers from now on ("" : no transaction yet, 404); no notification."""
        if status == "":
            with self._lock:
                self.transactions[order_id].status = ""
                return self.transactions[order_id]
        return self._move(order_id, status, gross_amount=amount, currency=currency, fraud_status=fraud_status)

    def status_body(self, txn: MidtransTransaction) -> dict:
        """The transaction as the status API and notifications write it."""
        body = {
            "transaction_time": _midtrans_time(txn.transaction_time),
            "transaction_status": txn.status,
            "transaction_id": txn.transaction_id,
            "status_message": "Success, transaction is found",
            "status_code": txn.status_code,
            "signature_key": self.signature(txn.order_id, txn.status_code, txn.gross),
            "payment_type": txn.payment_type,
            "order_id": txn.order_id,
            "merchant_id": self.merchant_id,
            "gross_amount": txn.gross,
            "fraud_status": txn.fraud_status,
            "currency": txn.currency,
            "expiry_time": _midtrans_time((txn.transaction_time or datetime.now(UTC)) + timedelta(days=1)),
        }
        if txn.payment_type == "bank_transfer":
            body["va_numbers"] = [{"bank": "bca", "va_number": txn.transaction_id.replace("-", "")[:11]}]
        if txn.settlement_time:
            body["settlement_time"] = _midtrans_time(txn.settlement_time)
        return body

    def signature(self, order_id: str, status_code: str, gross_amount: str, key: str | None = None) -> str:
        return hashlib.sha512(f"{order_id}{status_code}{gross_amount}{key or self.key}".encode()).hexdigest()

    def notify(self, order_id: str, *, forge: bool = False, **fields) -> Notification:
        """Send an HTTP notification of the transaction as it is, `fields` overriding what it says (a
        changed transaction_status brings its status_code along). Signed as documented over what it says,
        or with a wrong key when `forge`."""
        with self._lock:
            body = self.status_body(self.transactions[order_id])
        body["status_message"] = "midtrans payment notification"
        if "transaction_status" in fields and "status_code" not in fields:
            fields["status_code"] = MIDTRANS_STATUS_CODES.get(fields["transaction_status"], "201")
        body.update(fields)
        key = f"SB-Mid-server-{secrets.token_urlsafe(18)}" if forge else None
        body["signature_key"] = self.signature(
            body["order_id"], body["status_code"], body["gross_amount"], key
        )
        return self._send(body, {})

    # -- HTTP

    def route(self, request: Received) -> Answer:
        path = request.path
        if request.method == "POST" and path.rstrip("/") == "/snap/v1/transactions":
            return self._create(request)
        match = re.fullmatch(r"/snap/v4/redirection/([^/]+)(?:/(pay|cancel))?/?", path)
        if match:
            return self._page(request, match.group(1), match.group(2))
        match = re.fullmatch(r"/v2/([^/]+)/status/?", path)
        if match and request.method == "GET":
            self._meet()
            return self._status(request, unquote(match.group(1)))
        return _json(404, {"status_code": "404", "status_message": "The requested resource is not found"})

    def _create(self, request: Received) -> Answer:
        if not self._authorised(request):
            return _json(401, {"error_messages": MIDTRANS_UNAUTHORISED})
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _json(400, {"error_messages": ["There was a problem in the JSON you submitted"]})
        errors = []
        details = data.get("transaction_details")
        details = details if isinstance(details, dict) else {}
        order_id, gross = details.get("order_id"), details.get("gross_amount")
        if not order_id:
            errors.append("transaction_details.order_id is required")
        elif not isinstance(order_id, str) or not MIDTRANS_ORDER_ID.match(order_id):
            errors.append("transaction_details.order_id format is invalid")
        if gross is None:
            errors.append("transaction_details.gross_amount is required")
        elif isinstance(gross, bool) or not isinstance(gross, int) or gross < 1:
            errors.append("transaction_details.gross_amount must be an integer greater than or equal to 1")
        items = data.get("item_details")
        if items is not None and isinstance(gross, int):
            try:
                total = sum(int(item["price"]) * int(item["quantity"]) for item in items)
            except (KeyError, TypeError, ValueError):
                errors.append("item_details is invalid")
            else:
                if total != gross:
                    errors.append("transaction_details.gross_amount is not equal to the sum of item_details")
                if any(len(str(item.get("name", ""))) > 50 for item in items):
                    errors.append("item_details.name is too long (maximum is 50 characters)")
        email = (data.get("customer_details") or {}).get("email")
        if email is not None and not EMAIL.match(str(email)):
            errors.append("customer_details.email format is invalid")
        expiry = data.get("expiry")
        if expiry is not None:
            unit = str(expiry.get("unit", ""))
            if unit.rstrip("s") not in ("day", "hour", "minute") or not isinstance(
                expiry.get("duration"), int
            ):
                errors.append("expiry.unit and expiry.duration are invalid")
            try:
                datetime.strptime(expiry.get("start_time", ""), "%Y-%m-%d %H:%M:%S %z")
            except (TypeError, ValueError):
                errors.append("expiry.start_time format is invalid")
        with self._lock:
            if not errors and order_id in self.transactions:
                errors.append("transaction_details.order_id sudah digunakan")
            if errors:
                return _json(400, {"error_messages": errors})
            token = str(uuid.uuid4())
            self.transactions[order_id] = MidtransTransaction(
                order_id=order_id,
                gross_amount=Decimal(gross),
                token=token,
                finish_url=str((data.get("callbacks") or {}).get("finish", "")),
                request=data,
            )
        return _json(201, {"token": token, "redirect_url": f"{self.url}/snap/v4/redirection/{token}"})

    def _by_token(self, token: str) -> MidtransTransaction | None:
        with self._lock:
            return next((t for t in self.transactions.values() if t.token == token), None)

    def _page(self, request: Received, token: str, action: str | None) -> Answer:
        txn = self._by_token(token)
        if txn is None:
            return _html(
                404,
                "Midtrans",
                "<p>Whether the transaction is not available, or you typed in the wrong URL.</p>",
            )
        if action and request.method == "POST":
            if txn.status in ("", "pending"):
                (self.pay if action == "pay" else self.cancel)(txn.order_id)
            txn = self.transaction(txn.order_id)
            finish = txn.finish_url or self.url
            return _redirect(
                _with_query(
                    finish,
                    {
                        "order_id": txn.order_id,
                        "status_code": txn.status_code,
                        "transaction_status": txn.status,
                    },
                )
            )
        if txn.status in ("", "pending"):
            form = "".join(
                f"<form method='post' action='/snap/v4/redirection/{token}/{verb}'>"
                f"<button>{label}</button></form>"
                for verb, label in (("pay", "Pay"), ("cancel", "Cancel"))
            )
        else:
            form = f"<p>This transaction is {html.escape(txn.status)}.</p>"
        return _html(
            200,
            "Midtrans Snap",
            f"<h1>Midtrans</h1><p>Order ID <code>{html.escape(txn.order_id)}</code></p>"
            f"<p>Total <strong>Rp {_rupiah(txn.gross_amount)}</strong></p>{form}",
        )

    def _status(self, request: Received, order_id: str) -> Answer:
        if not self._authorised(request):
            return _json(
                401,
                {
                    "status_code": "401",
                    "status_message": "Transaction cannot be authorized with the current client/server key.",
                    "id": str(uuid.uuid4()),
                },
            )
        with self._lock:
            txn = self.transactions.get(order_id) or next(
                (t for t in self.transactions.values() if t.transaction_id == order_id), None
            )
            if txn is None or not txn.status:
                return _json(
                    404,
                    {
                        "status_code": "404",
                        "status_message": "Transaction doesn't exist.",
                        "id": str(uuid.uuid4()),
                    },
                )
            return _json(200, self.status_body(txn))


# --- Xendit -----------------------------------------------------------------------------------------------

XENDIT_CURRENCIES = ("IDR", "PHP", "THB", "VND", "MYR", "USD", "SGD")
XENDIT_MAX_DURATION = 31_536_000  # one year, in seconds


def _xendit_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _number(amount: Decimal) -> int | float:
    return int(amount) if amount == amount.to_integral_value() else float(amount)


@dataclass
class XenditInvoice:
    id: str
    external_id: str
    amount: Decimal
    currency: str
    request: dict
    payer_email: str = ""
    description: str = ""
    success_redirect_url: str = ""
    failure_redirect_url: str = ""
    status: str = "PENDING"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    expiry_date: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=1))
    paid_amount: Decimal | None = None
    paid_at: datetime | None = None
    payment_method: str = ""
    payment_channel: str = ""
    payment_destination: str = ""
    payment_id: str = ""


class XenditServer(ProviderServer):
    """Xendit's Invoices API and invoice callbacks (XENDIT_API_URL points at it)."""

    name = "xendit"

    def __init__(self, key: str | None = None, *, callback_token: str | None = None, **kwargs):
        super().__init__(key or f"xnd_development_{secrets.token_urlsafe(36)}", **kwargs)
        self.callback_token = callback_token or secrets.token_urlsafe(36)
        self.user_id = secrets.token_hex(12)
        self.merchant_name = "VPS Panel test merchant"
        self.invoices: dict[str, XenditInvoice] = {}

    # -- test controls

    def invoice(self, external_id: str) -> XenditInvoice:
        """The (latest) invoice made for an external_id."""
        with self._lock:
            found = [i for i in self.invoices.values() if i.external_id == external_id]
            if not found:
                raise KeyError(external_id)
            return found[-1]

    def created(self, external_id: str) -> dict:
        return self.invoice(external_id).request

    def _move(self, external_id: str, status: str, **fields) -> XenditInvoice:
        with self._lock:
            invoice = self.invoice(external_id)
            now = datetime.now(UTC)
            invoice.status = status
            invoice.updated = now
            if status in ("PAID", "SETTLED") and invoice.paid_at is None:
                invoice.paid_at = now
                invoice.paid_amount = invoice.amount
                invoice.payment_method = "BANK_TRANSFER"
                invoice.payment_channel = "BCA"
                invoice.payment_destination = str(secrets.randbelow(10**12)).zfill(12)
                invoice.payment_id = secrets.token_hex(12)
            for name, value in fields.items():
                if value is not None:
                    setattr(invoice, name, value)
            return invoice

    def pay(
        self,
        external_id: str,
        *,
        notify: bool = True,
        amount: Decimal | None = None,
        currency: str | None = None,
    ) -> str:
        """The customer paid: PAID (`amount`: what was paid, if not the invoice's). Returns the invoice id."""
        invoice = self._move(external_id, "PAID", currency=currency)
        if amount is not None:
            with self._lock:
                invoice.paid_amount = amount
        if notify:
            self.notify(external_id)
        return invoice.id

    def expire(self, external_id: str, *, notify: bool = True) -> None:
        self._move(external_id, "EXPIRED")
        if notify:
            self.notify(external_id)

    cancel = expire  # an invoice is not cancelled but expired (POST /invoices/{id}/expire!)

    def set_status(
        self,
        external_id: str,
        status: str,
        *,
        amount: Decimal | None = None,
        currency: str | None = None,
    ) -> XenditInvoice:
        """What GET /v2/invoices answers from now on (`amount`: the paid_amount); no callback."""
        invoice = self._move(external_id, status, currency=currency)
        if amount is not None:
            with self._lock:
                invoice.paid_amount = amount
        return invoice

    def invoice_body(self, invoice: XenditInvoice) -> dict:
        """The invoice as the Invoices API writes it."""
        body = {
            "id": invoice.id,
            "external_id": invoice.external_id,
            "user_id": self.user_id,
            "status": invoice.status,
            "merchant_name": self.merchant_name,
            "merchant_profile_picture_url": "https://du8nwjtfkinx.cloudfront.net/xendit.png",
            "amount": _number(invoice.amount),
            "payer_email": invoice.payer_email,
            "description": invoice.description,
            "expiry_date": _xendit_time(invoice.expiry_date),
            "invoice_url": f"{self.url}/web/{invoice.id}",
            "available_banks": [
                {
                    "bank_code": bank,
                    "collection_type": "POOL",
                    "transfer_amount": _number(invoice.amount),
                    "bank_branch": "Virtual Account",
                    "account_holder_name": self.merchant_name.upper(),
                    "identity_amount": 0,
                }
                for bank in ("BCA", "BNI", "BRI", "MANDIRI", "PERMATA")
            ],
            "available_retail_outlets": [],
            "available_ewallets": [],
            "available_qr_codes": [{"qr_code_type": "QRIS"}],
            "available_direct_debits": [],
            "available_paylaters": [],
            "should_exclude_credit_card": False,
            "should_send_email": False,
            "success_redirect_url": invoice.success_redirect_url,
            "failure_redirect_url": invoice.failure_redirect_url,
            "created": _xendit_time(invoice.created),
            "updated": _xendit_time(invoice.updated),
            "currency": invoice.currency,
        }
        if invoice.status in ("PAID", "SETTLED"):
            body.update(
                {
                    "paid_amount": _number(invoice.paid_amount),
                    "paid_at": _xendit_time(invoice.paid_at),
                    "payment_method": invoice.payment_method,
                    "payment_channel": invoice.payment_channel,
                    "payment_destination": invoice.payment_destination,
                    "bank_code": invoice.payment_channel,
                }
            )
        return body

    def callback_body(self, invoice: XenditInvoice) -> dict:
        """The invoice callback's JSON, as documented (InvoiceCallback)."""
        body = {
            "id": invoice.id,
            "external_id": invoice.external_id,
            "user_id": self.user_id,
            "is_high": False,
            "status": invoice.status,
            "merchant_name": self.merchant_name,
            "amount": _number(invoice.amount),
            "payer_email": invoice.payer_email,
            "description": invoice.description,
            "created": _xendit_time(invoice.created),
            "updated": _xendit_time(invoice.updated),
            "currency": invoice.currency,
            "success_redirect_url": invoice.success_redirect_url,
            "failure_redirect_url": invoice.failure_redirect_url,
        }
        if invoice.status in ("PAID", "SETTLED"):
            body.update(
                {
                    "paid_amount": _number(invoice.paid_amount),
                    "paid_at": _xendit_time(invoice.paid_at),
                    "payment_method": invoice.payment_method,
                    "payment_channel": invoice.payment_channel,
                    "payment_destination": invoice.payment_destination,
                    "bank_code": invoice.payment_channel,
                    "payment_id": invoice.payment_id,
                    "adjusted_received_amount": _number(invoice.paid_amount),
                    "fees_paid_amount": 0,
                }
            )
        return body

    def notify(self, external_id: str, *, forge: bool = False, **fields) -> Notification:
        """Send the invoice callback of the invoice as it is, `fields` overriding what it says, with the
        x-callback-token header (a wrong one when `forge`)."""
        with self._lock:
            body = self.callback_body(self.invoice(external_id))
        body.update(fields)
        token = secrets.token_urlsafe(36) if forge else self.callback_token
        return self._send(body, {"x-callback-token": token})

    # -- HTTP

    def route(self, request: Received) -> Answer:
        path = request.path.rstrip("/")
        match = re.fullmatch(r"/web/([0-9a-f]+)(?:/(pay))?", path)
        if match:
            return self._page(request, match.group(1), match.group(2))
        if not path.startswith("/v2/invoices"):
            return _json(404, {"error_code": "NOT_FOUND", "message": "The requested resource was not found"})
        if not self._authorised(request):
            return _json(401, {"error_code": "INVALID_API_KEY", "message": "API key is invalid"})
        if request.method == "POST" and path == "/v2/invoices":
            return self._create(request)
        self._meet()
        if request.method == "GET" and path == "/v2/invoices":
            external_id = request.query.get("external_id", [None])[0]
            with self._lock:
                found = [
                    self.invoice_body(i)
                    for i in sorted(self.invoices.values(), key=lambda i: i.created, reverse=True)
                    if external_id is None or i.external_id == external_id
                ]
            return _json(200, found)
        match = re.fullmatch(r"/v2/invoices/([^/]+)", path)
        if request.method == "GET" and match:
            with self._lock:
                invoice = self.invoices.get(unquote(match.group(1)))
                if invoice is None:
                    return _json(
                        404, {"error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Invoice not found"}
                    )
                return _json(200, self.invoice_body(invoice))
        return _json(404, {"error_code": "NOT_FOUND", "message": "The requested resource was not found"})

    def _create(self, request: Received) -> Answer:
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _json(
                400, {"error_code": "INVALID_JSON_FORMAT", "message": "The request body is not valid JSON"}
            )
        problems = []
        external_id, amount = data.get("external_id"), data.get("amount")
        if not isinstance(external_id, str) or not external_id.strip():
            problems.append('"external_id" is required')
        try:
            value = Decimal(str(amount)) if not isinstance(amount, bool) and amount is not None else None
        except InvalidOperation:
            value = None
        if value is None or value <= 0:
            problems.append('"amount" must be a number greater than 0')
        duration = data.get("invoice_duration", 86400)
        if not isinstance(duration, int | float) or not 1 <= duration <= XENDIT_MAX_DURATION:
            problems.append(f'"invoice_duration" must be between 1 and {XENDIT_MAX_DURATION}')
        if problems:
            return _json(400, {"error_code": "API_VALIDATION_ERROR", "message": "; ".join(problems)})
        email = data.get("payer_email")
        if email is not None and not EMAIL.match(str(email)):
            return _json(400, {"error_code": "EMAIL_FORMAT_ERROR", "message": "The payer_email is not valid"})
        currency = data.get("currency", "IDR")
        if currency not in XENDIT_CURRENCIES:
            return _json(
                400,
                {"error_code": "UNSUPPORTED_CURRENCY", "message": f"Currency {currency} is not supported"},
            )
        if currency == "IDR":
            value = value.to_integral_value(rounding="ROUND_DOWN")  # IDR decimals are truncated
        now = datetime.now(UTC)
        invoice = XenditInvoice(
            id=secrets.token_hex(12),
            external_id=external_id,
            amount=value,
            currency=currency,
            request=data,
            payer_email=str(email or ""),
            description=str(data.get("description", "")),
            success_redirect_url=str(data.get("success_redirect_url", "")),
            failure_redirect_url=str(data.get("failure_redirect_url", "")),
            created=now,
            updated=now,
            expiry_date=now + timedelta(seconds=duration),
        )
        with self._lock:
            # Xendit documents no uniqueness of external_id for invoices: another invoice is made.
            self.invoices[invoice.id] = invoice
            body = self.invoice_body(invoice)
        return _json(200, body)

    def _page(self, request: Received, invoice_id: str, action: str | None) -> Answer:
        with self._lock:
            invoice = self.invoices.get(invoice_id)
        if invoice is None:
            return _html(404, "Xendit", "<p>Invoice not found.</p>")
        if invoice.status == "PENDING" and invoice.expiry_date <= datetime.now(UTC):
            self.expire(invoice.external_id)
        if action and request.method == "POST":
            if invoice.status == "PENDING":
                self.pay(invoice.external_id)
            target = invoice.success_redirect_url if invoice.status in ("PAID", "SETTLED") else ""
            return _redirect(target or invoice.failure_redirect_url or f"{self.url}/web/{invoice.id}")
        if invoice.status == "PENDING":
            form = f"<form method='post' action='/web/{invoice.id}/pay'><button>Pay</button></form>"
        elif invoice.status == "EXPIRED":
            form = "<p>This invoice has expired.</p>"
        else:
            form = "<p>This invoice is paid.</p>"
        return _html(
            200,
            "Xendit invoice",
            f"<h1>{html.escape(self.merchant_name)}</h1><p>{html.escape(invoice.description)}</p>"
            f"<p>{html.escape(invoice.currency)} <strong>{_rupiah(invoice.amount)}</strong></p>{form}",
        )
