"""Official answer normalisation and accuracy on hand-computed cases."""

import pytest

from vqa.data.answers import (
    accuracy_from_matches,
    answer_scores,
    clean,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("yes!", "yes "),  # no mark touches a space: replaced by a space
    ("hot-dog", "hot dog"),
    ("hot - dog", "hot  dog"),  # a mark touches a space: every occurrence deleted
    ("a-b c -d", "ab c d"),
    ("1,000", "1000"),  # digit-comma-digit: every mark deleted ...
    ("red/blue 1,5", "redblue 15"),  # ... even elsewhere in the text
    ("red,blue", "red blue"),
    ("st. louis", "st louis"),  # periods not followed by a digit go
    ("2.5", "2.5"),  # ... those before a digit stay
    ("end.", "end"),
    ("(yes)", " yes "),
    ("what?", "what "),
    ("don't", "don't"),  # apostrophes are not in the list
])
def test_punctuation(text: str, expected: str) -> None:
    assert process_punctuation(text) == expected


def test_at_most_32_periods_are_removed() -> None:
    # The official code passes re.UNICODE (= 32) as re.sub's count.
    assert process_punctuation("." * 40) == "." * 8


@pytest.mark.parametrize(("text", "expected"), [
    ("Two", "2"), ("none", "0"), ("ten", "10"), ("eleven", "eleven"),
    ("a dog", "dog"), ("The Cat", "cat"), ("an apple a day", "apple day"),
    ("dont", "don't"), ("isnt", "isn't"), ("whats up", "what's up"),
    ("Im", "im"),  # lower-cased before the contraction map, whose key is "Im": never matches
    ("  two   dogs ", "2 dogs"),
])
def test_digit_article(text: str, expected: str) -> None:
    assert process_digit_article(text) == expected


def test_full_normalisation() -> None:
    assert normalize_answer(" The two dogs.\n") == "2 dogs"
    assert normalize_answer("Yes!") == "yes"
    assert normalize_answer("hot-dog") == "hot dog"


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9),
                                                    (4, 1.0), (10, 1.0)])
def test_leave_one_out_accuracy(matches: int, expected: float) -> None:
    assert accuracy_from_matches(matches) == pytest.approx(expected, abs=1e-12)
    human = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", human) == pytest.approx(expected, abs=1e-12)


def test_shortcut_min_k_over_3_differs() -> None:
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) != pytest.approx(1 / 3)


def test_identical_answers_are_not_normalised_in_current_version() -> None:
    human = ["yes"] * 10
    assert vqa_accuracy("yes", human) == 1.0
    assert vqa_accuracy("Yes", human) == 0.0  # current: nothing normalised
    assert vqa_accuracy("Yes", human, "2016") == 1.0  # 2016: the prediction always is
    assert vqa_accuracy(" yes\n", human) == 1.0  # but newlines/tabs are cleaned and stripped


def test_versions_differ_on_human_answer_normalisation() -> None:
    human = ["two"] * 9 + ["2"]
    assert vqa_accuracy("2", human) == 1.0  # current: human answers fully normalised
    assert vqa_accuracy("2", human, "2016") == pytest.approx(0.3)  # 2016: punctuation only
    assert vqa_accuracy("two", human, "2016") == pytest.approx(0.3)  # prediction -> "2"


def test_differing_answers_are_normalised_both_sides() -> None:
    human = ["A dog."] * 3 + ["dog"] * 2 + ["cat"] * 5
    assert vqa_accuracy("the dog", human) == 1.0
    assert vqa_accuracy("Cat!", human) == 1.0


def test_unknown_version_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown evaluation version"):
        vqa_accuracy("a", ["a"], "2015")  # type: ignore[arg-type]


def test_answer_scores_are_the_soft_targets() -> None:
    human = ["2"] * 2 + ["two"] * 1 + ["3"] * 7
    scores, form = answer_scores(human)
    assert form is normalize_answer
    assert scores == pytest.approx({"2": 0.9, "3": 1.0})
    scores, form = answer_scores(["Yes"] * 10)
    assert form is clean and scores == {"Yes": 1.0}
    scores, form = answer_scores(["Yes"] * 10, "2016")  # 2016: the prediction is normalised
    assert form is normalize_answer and scores == {"Yes": 1.0}
