"""The self-check's verdict from its outcomes (no build, no guest): a mutant that did not
build or is not compiled in is the corpus's error, apart from the catch rate."""

from __future__ import annotations

from harness.workflows.selfcheck import CORPUS, Mutant, Outcome, SelfCheck

M = Mutant("m", "mm/x.c", "a", "b", "breaks x")


def test_corpus_has_unique_names_and_one_changed_line_each() -> None:
    assert len({m.name for m in CORPUS}) == len(CORPUS) >= 15
    for m in CORPUS:
        old, new = m.old.splitlines(), m.new.splitlines()
        changed = [line for line in old if line not in new] + [n for n in new if n not in old]
        assert 1 <= len(changed) <= 2, m.name  # one line replaced, or one line deleted


def test_unchanged_image_is_a_corpus_error_not_a_miss() -> None:
    result = SelfCheck(
        [], [Outcome(M, built=True, caught_by=["t"]), Outcome(M, True, compiled=False)]
    )

    assert result.rate == 1.0
    assert result.corpus_errors == ["m"]
    assert "not compiled in (image unchanged)" in result.table()


def test_miss_counts_against_the_rate() -> None:
    result = SelfCheck([], [Outcome(M, built=True, caught_by=["t"]), Outcome(M, built=True)])

    assert result.rate == 0.5 and not result.corpus_errors
    assert "**MISSED**" in result.table() and "catch rate: 1/2 (50 %)" in result.table()
