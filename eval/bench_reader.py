"""The answerer's part of `rag bench`: its share of a warm `ask`, and the ask's budget.

Issue 13's budget: a warm `ask` (embedding, search, the answerer on the retrieved candidates)
takes at most 10 times a bare embedding of the question, both measured in the same run (so a
slower or busier machine slows both alike). The answerer's share (a learned reader's, once it answers) is reported beside it.
"""
from __future__ import annotations

# A warm ask / bare question embedding, p50: issue 13's budget (Haystack's default extractive
# reader needs ~4 s per question on the same machine, ~30x ours before the reader).
WARM_ASK_BUDGET = 10.0

STAGE_LABELS = {"embed": "embedding", "search": "search", "answer": "answer extraction"}


def budget_failures(rows) -> list[str]:
    """A failure message when the warm ask's p50 exceeds its budget against the bare embedding."""
    for row in rows:
        if row.what.startswith("warm ask p50") and row.ratio > WARM_ASK_BUDGET:
            return [f"a warm ask takes {row.ratio:.1f}x a bare question embedding (budget {WARM_ASK_BUDGET:.0f}x)"]
    return []
