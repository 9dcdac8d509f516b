import pytest
from decimal import Decimal
from tests.panel.test_main_pages_have_constant_query_counts import *  # noqa

@pytest.fixture(autouse=True)
def _no_query_proration(monkeypatch):
    from billing import services
    monkeypatch.setattr(services, "proration", lambda sub, plan, at=None: Decimal(0))
