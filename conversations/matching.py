"""Which demand requests look alike: the rule the intake's duplicate check uses, in one place.

Titles are compared word-set against word-set (``token_set_ratio`` after lower-casing and
dropping punctuation), so "Invoice automation" and "Automate invoices for AP"-style reorderings
score high while unrelated titles do not. :func:`connected` groups look-alike requests of
different business partners into one opportunity (the "dot-connector" view).

Example::

    groups = connected([(4, "Invoice automation", 1, "Finance"), (9, "invoice automation", 2, "Sales")])
    groups[0].partners == ("Finance", "Sales")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process, utils

DUPLICATE_SCORE = 85.0  # how alike two titles must be to count as the same need


def most_alike(title: str, titles: Mapping[int, str]) -> int | None:
    """The id of the title most like ``title`` at or above ``DUPLICATE_SCORE`` (the intake's
    duplicate check), or None."""
    best = process.extractOne(title, titles, scorer=fuzz.token_set_ratio, processor=utils.default_process,
                              score_cutoff=DUPLICATE_SCORE)
    return int(best[2]) if best else None


def similarity(a: str, b: str) -> float:
    """0-100: how alike two titles are, as the intake's duplicate check judges them."""
    return float(fuzz.token_set_ratio(a, b, processor=utils.default_process))


@dataclass(frozen=True, slots=True)
class Opportunity:
    """Requests of several partners that look alike: ``title`` is the first one's."""

    title: str
    partners: tuple[str, ...]
    request_ids: tuple[int, ...]

    @property
    def keys(self) -> str:
        return ", ".join(f"DR-{i}" for i in self.request_ids)

    def sentence(self) -> str:
        """``Finance, Operations and Sales each asked for invoice automation: DR-4, DR-9, DR-17``."""
        names = list(self.partners)
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"{who} each asked for {self.title[:1].lower() + self.title[1:]}: {self.keys}"


def connected(requests: Sequence[tuple[int, str, int, str]]) -> list[Opportunity]:
    """Group (id, title, partner id, partner name) by look-alike titles; keep the groups that span
    two or more partners, biggest first. Quadratic in the list: callers bound it."""
    parent = list(range(len(requests)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    titles = [r[1] for r in requests]
    for i, title in enumerate(titles):
        later = titles[i + 1:]
        for _, _, j in process.extract(title, later, scorer=fuzz.token_set_ratio, processor=utils.default_process,
                                       score_cutoff=DUPLICATE_SCORE, limit=None):
            a, b = root(i), root(i + 1 + j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(requests)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        partners = {requests[i][2]: requests[i][3] for i in sorted(members, key=lambda i: requests[i][0])}
        if len(partners) < 2:
            continue
        ids = sorted(requests[i][0] for i in members)
        first = min(members, key=lambda i: requests[i][0])
        out.append(Opportunity(requests[first][1], tuple(sorted(partners.values())), tuple(ids)))
    return sorted(out, key=lambda o: (-len(o.partners), -len(o.request_ids), o.request_ids[0]))
