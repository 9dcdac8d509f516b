"""Paging long staff lists without counting every row: a count that stops a little past what a page needs."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property

# Rows counted at most before a list says "more than …" (the first 200 pages of 50).
COUNT_BOUND = 10_000


class BoundedPaginator(Paginator):
    """A Paginator whose count reads at most `bound` + 1 rows (COUNT over a LIMIT subquery), so a page of a
    100,000-row list costs the same as one of a 1,000-row list. The bound grows with the page asked for, so
    every page stays reachable through "next". `exact` says whether `count` is the real total; when it is
    not, `count` is the bound and there are more rows than that."""

    def __init__(self, object_list, per_page: int, page_number=None, bound: int = COUNT_BOUND) -> None:
        super().__init__(object_list, per_page)
        try:
            wanted = int(page_number or 1)
        except (TypeError, ValueError):
            wanted = 1
        self.bound = max(bound, wanted * per_page)

    @cached_property
    def _counted(self) -> int:
        # Without the list's ordering: the count is the same, and Postgres may count from any index.
        return self.object_list.order_by()[: self.bound + 1].count()

    @cached_property
    def exact(self) -> bool:
        return self._counted <= self.bound

    @cached_property
    def count(self) -> int:
        # Past the bound, one row more than the bound: the page after the bound's last exists.
        return self._counted

    @cached_property
    def shown_count(self) -> int:
        """The number a page shows: the real total, or the bound (read as "more than …")."""
        return self._counted if self.exact else self.bound
