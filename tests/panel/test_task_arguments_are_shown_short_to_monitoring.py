"""What a task's arguments look like to monitoring (the message's argsrepr): the usual few ids as repr()
writes them, and a long argument (a queued mail with its attachment) cut to Celery's own limit, never the
whole body."""

from celery.utils.saferepr import saferepr

from panel.dispatch import ARGS_TEXT_MAX, args_text


def test_ids_are_written_as_repr_writes_them():
    args = ["6c82fb2f-492f-460d-b476-c3d5e2972b5d"]
    assert args_text(args) == repr(args) == saferepr(args, ARGS_TEXT_MAX)


def test_a_queued_mail_is_cut_short():
    mail = {"subject": "Invoice", "attachments": [["invoice.pdf", "JVBERi0" * 10_000, "application/pdf"]]}
    text = args_text([mail])
    assert text == saferepr([mail], ARGS_TEXT_MAX)
    assert len(text) <= ARGS_TEXT_MAX + 20 and "JVBERi0" * 200 not in text
