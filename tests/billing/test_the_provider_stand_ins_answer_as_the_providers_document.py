"""The local Midtrans and Xendit the billing tests pay through answer as the providers document: a wrong
key is their 401, a malformed or repeated request their 400, an unknown transaction or invoice their 404,
and what they sign is signed by the documented formula. (Checks of the test infrastructure itself: the
other tests are only as good as it is.)"""

from __future__ import annotations

import hashlib

import pytest
import requests

SNAP = "/snap/v1/transactions"


def _snap(midtrans, body, key: str | None = None) -> requests.Response:
    return requests.post(midtrans.url + SNAP, json=body, auth=(key or midtrans.key, ""), timeout=10)


def _order(order_id: str = "order-1", gross: int = 10000) -> dict:
    return {
        "transaction_details": {"order_id": order_id, "gross_amount": gross},
        "item_details": [{"id": "a1", "price": gross, "quantity": 1, "name": "Top-up"}],
    }


def test_midtrans_snap_answers_201_then_400_for_a_reused_order_id(midtrans):
    made = _snap(midtrans, _order())
    assert made.status_code == 201
    assert set(made.json()) == {"token", "redirect_url"}
    assert made.json()["redirect_url"].endswith(made.json()["token"])
    again = _snap(midtrans, _order())
    assert again.status_code == 400
    assert again.json() == {"error_messages": ["transaction_details.order_id sudah digunakan"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"transaction_details": {"gross_amount": 10000}}, "transaction_details.order_id is required"),
        ({"transaction_details": {"order_id": "o-2"}}, "transaction_details.gross_amount is required"),
        (
            {**_order("o-3"), "item_details": [{"id": "a", "price": 5000, "quantity": 1, "name": "x"}]},
            "transaction_details.gross_amount is not equal to the sum of item_details",
        ),
    ],
)
def test_midtrans_snap_refuses_a_malformed_transaction_with_400(midtrans, body, message):
    refused = _snap(midtrans, body)
    assert refused.status_code == 400
    assert message in refused.json()["error_messages"]
    assert not midtrans.transactions


def test_midtrans_answers_a_wrong_server_key_with_its_401(midtrans):
    refused = _snap(midtrans, _order(), key="SB-Mid-server-wrong")
    assert refused.status_code == 401
    assert refused.json()["error_messages"][0].startswith("Access denied due to unauthorized transaction")
    status = requests.get(f"{midtrans.url}/v2/order-1/status", auth=("wrong", ""), timeout=10)
    assert status.status_code == 401 and status.json()["status_code"] == "401"


def test_midtrans_status_is_404_until_a_transaction_exists_then_signed_as_documented(midtrans):
    _snap(midtrans, _order("order-9", 150000))
    unknown = requests.get(f"{midtrans.url}/v2/order-9/status", auth=(midtrans.key, ""), timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["status_message"] == "Transaction doesn't exist."

    transaction_id = midtrans.pay("order-9", notify=False)
    found = requests.get(f"{midtrans.url}/v2/order-9/status", auth=(midtrans.key, ""), timeout=10).json()
    assert (found["transaction_status"], found["status_code"], found["gross_amount"]) == (
        "settlement",
        "200",
        "150000.00",
    )
    assert found["transaction_id"] == transaction_id and found["currency"] == "IDR"
    expected = hashlib.sha512(f"order-9200150000.00{midtrans.key}".encode()).hexdigest()
    assert found["signature_key"] == expected
    # The status API also takes the transaction id.
    by_id = requests.get(f"{midtrans.url}/v2/{transaction_id}/status", auth=(midtrans.key, ""), timeout=10)
    assert by_id.json()["order_id"] == "order-9"


def _invoice(xendit, body: dict, key: str | None = None) -> requests.Response:
    return requests.post(f"{xendit.url}/v2/invoices", json=body, auth=(key or xendit.key, ""), timeout=10)


def test_xendit_makes_an_invoice_and_lists_it_by_external_id(xendit):
    made = _invoice(xendit, {"external_id": "inv-1", "amount": 50000.75, "payer_email": "a@example.com"})
    assert made.status_code == 200
    invoice = made.json()
    assert (invoice["status"], invoice["amount"], invoice["currency"]) == ("PENDING", 50000, "IDR")
    assert invoice["invoice_url"].endswith(invoice["id"]) and invoice["expiry_date"].endswith("Z")
    got = requests.get(f"{xendit.url}/v2/invoices/{invoice['id']}", auth=(xendit.key, ""), timeout=10)
    assert got.json()["external_id"] == "inv-1"
    # Xendit documents no uniqueness of external_id: a second invoice is made, and both are listed.
    assert _invoice(xendit, {"external_id": "inv-1", "amount": 50000}).status_code == 200
    listed = requests.get(
        f"{xendit.url}/v2/invoices", params={"external_id": "inv-1"}, auth=(xendit.key, ""), timeout=10
    )
    assert len(listed.json()) == 2
    none = requests.get(
        f"{xendit.url}/v2/invoices", params={"external_id": "inv-2"}, auth=(xendit.key, ""), timeout=10
    )
    assert none.status_code == 200 and none.json() == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": 50000}, "API_VALIDATION_ERROR"),
        ({"external_id": "x-1"}, "API_VALIDATION_ERROR"),
        ({"external_id": "x-1", "amount": 50000, "payer_email": "not an email"}, "EMAIL_FORMAT_ERROR"),
        ({"external_id": "x-1", "amount": 50000, "currency": "EUR"}, "UNSUPPORTED_CURRENCY"),
    ],
)
def test_xendit_refuses_a_malformed_invoice_with_400(xendit, body, code):
    refused = _invoice(xendit, body)
    assert refused.status_code == 400 and refused.json()["error_code"] == code
    assert not xendit.invoices


def test_xendit_answers_a_wrong_key_with_its_401_and_an_unknown_invoice_with_404(xendit):
    refused = _invoice(xendit, {"external_id": "x-1", "amount": 1000}, key="xnd_development_wrong")
    assert refused.status_code == 401 and refused.json()["error_code"] == "INVALID_API_KEY"
    unknown = requests.get(f"{xendit.url}/v2/invoices/{'0' * 24}", auth=(xendit.key, ""), timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "INVOICE_NOT_FOUND_ERROR"
