"""The self-check's verdict from its outcomes (no build, no guest): a mutant that did not
build or is not compiled in is the corpus's error, apart from the catch rate."""

from __future__ import annotations

from harness.workflows.selfcheck import CORPUS, Mutant, Outcome, SelfCheck

M = Mutant("m", "mm/x.c", "a", "b", "breaks x")


def test_corpus_has_unique_names_and_changes_one_line_each() -> None:
    assert len({m.name for m in CORPUS}) == len(CORPUS) >= 15
    for m in CORPUS:
        old, new = m.old.splitlines(), m.new.splitlines()
        assert len(old) == len(new), m.name  # the same __LINE__s: see _object_digest
        assert sum(a != b for a, b in zip(old, new, strict=True)) == 1, m.name


def test_unchanged_image_is_a_corpus_error_not_a_miss() -> None:
    result = SelfCheck(
        [], [Outcome(M, built=True, caught_by=["t"]), Outcome(M, True, compiled=False)]
    )

    assert result.rate == 1.0
    assert result.corpus_errors == ["m"]
    assert "not compiled in (object unchanged)" in result.table()


def test_miss_counts_against_the_rate() -> None:
    result = SelfCheck([], [Outcome(M, built=True, caught_by=["t"]), Outcome(M, built=True)])

    assert result.rate == 0.5 and not result.corpus_errors
    assert "**MISSED**" in result.table() and "catch rate: 1/2 (50 %)" in result.table()
