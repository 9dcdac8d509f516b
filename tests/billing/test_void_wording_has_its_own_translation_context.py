"""Indonesian providers say "Batalkan" (to void) and "Dibatalkan" (void) for invoices: the void wording of
billing carries a translation context, so that it never shares a msgid with the generic "Cancel" ("Batal")
nor the status with the button."""

import re
from pathlib import Path

from django.conf import settings
from django.utils import translation

from billing.models import Invoice

TEMPLATES = Path(settings.BASE_DIR) / "templates" / "billing"
# {% translate "..." %} and {% blocktranslate ... %}...{% endblocktranslate %} with what they translate.
TAGS = re.compile(
    r"{%\s*translate\s+\"(?P<msg>[^\"]*)\"(?P<opts>[^%]*)%}"
    r"|{%\s*blocktranslate(?P<bopts>[^%]*)%}(?P<bmsg>.*?){%\s*endblocktranslate\s*%}",
    re.S,
)


def test_the_void_status_label_has_a_context_of_its_own():
    with translation.override("id"):
        label = str(Invoice.Status.VOID.label)
        assert label != translation.gettext("Cancel")
        assert label == translation.pgettext("invoice status", "Void")
    assert str(Invoice.Status.VOID.label) == "Void"


def test_every_void_string_in_the_billing_templates_has_a_context():
    found = []
    for path in sorted(TEMPLATES.glob("*.html")):
        for match in TAGS.finditer(path.read_text()):
            message = match["msg"] if match["msg"] is not None else match["bmsg"]
            options = match["opts"] if match["msg"] is not None else match["bopts"]
            if re.search(r"\bvoid", message, re.I):
                found.append((path.name, message))
                assert re.search(r"\bcontext\s+\"invoice (status|action)\"", options), (path.name, message)
    assert len(found) >= 5, found  # the button, its confirmation (twice), "Void invoice", "Voided", "Void."
