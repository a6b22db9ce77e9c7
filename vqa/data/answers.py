"""Answer normalisation and accuracy exactly as the official VQA evaluation (``vqaEval.py``).

Two official releases are in use and differ in what they normalise:

* ``current`` (VQA API master since 2021, used by the evaluation server): newlines and tabs are
  cleaned from every answer; only when the ten human answers are not all identical are the human
  answers and the prediction normalised (punctuation, then digits/articles/contractions).
* ``2016`` (the original release copied by many codebases): the prediction is always normalised;
  human answers get punctuation processing only, and only when they are not all identical.

The accuracy of a prediction is the mean over the ten leave-one-annotator-out subsets of
``min(1, matches / 3)``. ``RULES`` and ``accuracy_from_matches`` are the one statement of both:
the soft targets and training metric (``vqa.data.scoring``), ``vqa evaluate`` and the vectorised
official evaluator (``vqa.evaluation``) all go through them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

EvalVersion = Literal["current", "2016"]
VERSIONS: tuple[str, ...] = ("current", "2016")

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
           "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")
# The official pattern, quirks included: "(?!<=\d)" is a look-ahead for the text "<=" + digit.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA = re.compile(r"(\d)(,)(\d)")


@lru_cache(maxsize=1 << 20)  # answers repeat heavily: VQA v2 train has 4.4M answers, ~0.2M distinct
def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: a mark touching a space (or any digit-comma-digit in the
    text) is deleted everywhere, otherwise replaced by a space; periods not before a digit go."""
    out = text
    delete = _COMMA.search(text) is not None
    for p in PUNCTUATION:
        touches_space = p + " " in text or " " + p in text
        out = out.replace(p, "" if delete or touches_space else " ")
    # The official code passes re.UNICODE (= 32) as ``count``: at most 32 periods are removed.
    return _PERIOD.sub("", out, count=int(re.UNICODE))


@lru_cache(maxsize=1 << 20)
def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lower case, number words to digits, drop articles,
    restore contractions."""
    words = [NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def clean(text: str) -> str:
    """Newlines and tabs to spaces, then strip: what the evaluation does to every prediction."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str) -> str:
    """The full normalisation: clean, punctuation, digits / articles / contractions."""
    return process_digit_article(process_punctuation(clean(text)))


def _as_written(text: str) -> str:
    return text


@dataclass(frozen=True)
class Rules:
    """What one release compares: the form of the human answers and of the prediction when the
    humans' answers (in their ``same_human`` form) are all identical, and when they differ."""

    same_human: Callable[[str], str]
    same_prediction: Callable[[str], str]
    differ_human: Callable[[str], str]
    differ_prediction: Callable[[str], str]


RULES: dict[str, Rules] = {
    "current": Rules(clean, clean, normalize_answer, normalize_answer),
    "2016": Rules(_as_written, normalize_answer, process_punctuation, normalize_answer),
}


def rules(version: str) -> Rules:
    """The comparison rules of an evaluation release (an unknown one is an error)."""
    if version not in RULES:
        raise ValueError(f"unknown evaluation version {version!r}; expected one of {VERSIONS}")
    return RULES[version]


def compared_humans(human: Sequence[str], version: EvalVersion = "current"
                    ) -> tuple[list[str], Callable[[str], str]]:
    """The human answers as the official script compares them, and the form it gives the
    prediction for this question."""
    r = rules(version)
    same = [r.same_human(h) for h in human]
    if len(set(same)) > 1:
        return [r.differ_human(h) for h in human], r.differ_prediction
    return same, r.same_prediction


def process_answers(prediction: str, human: Sequence[str], version: EvalVersion = "current"
                    ) -> tuple[str, list[str]]:
    """The prediction and human answers as the official script compares them."""
    processed, form = compared_humans(human, version)
    return form(prediction), processed


def accuracy_from_matches(matches: Any, total: Any = 10) -> Any:
    """Mean over the ``total`` leave-one-out subsets of ``min(1, matches in subset / 3)``:
    dropping a matching annotator leaves ``matches - 1``, dropping another leaves ``matches``.

    Numbers give a float; arrays (one entry per question, ``total`` > 0) give an array.
    """
    if not isinstance(matches, np.ndarray) and total == 0:
        return 0.0
    minimum = np.minimum if isinstance(matches, np.ndarray) else min
    dropped_match = matches * minimum(1.0, (matches - 1) / 3)
    dropped_other = (total - matches) * minimum(1.0, matches / 3)
    return (dropped_match + dropped_other) / total


def leave_one_out(processed: Sequence[str], records: Sequence[Any], prediction: str) -> float:
    """The accuracy's definition, for answer records that may repeat: the mean over records ``r``
    of ``min(1, matches among the records that differ from r / 3)`` (the official
    ``item != gtAnsDatum`` drops every identical record). With distinct records this is
    ``accuracy_from_matches``."""
    if len(set(records)) == len(records):
        return accuracy_from_matches(sum(a == prediction for a in processed), len(processed))
    accs = []
    for r in records:
        others = [p for p, o in zip(processed, records, strict=True) if o != r]
        accs.append(min(1.0, sum(p == prediction for p in others) / 3))
    return sum(accs) / len(accs)


def vqa_accuracy(prediction: str, human: Sequence[str], version: EvalVersion = "current") -> float:
    """Official accuracy of one prediction against the human answers (all records distinct)."""
    pred, processed = process_answers(prediction, human, version)
    return accuracy_from_matches(sum(h == pred for h in processed), len(processed))


def answer_scores(human: Sequence[str], version: EvalVersion = "current"
                  ) -> tuple[dict[str, float], Callable[[str], str]]:
    """Official accuracy of every answer that scores above zero, keyed by its compared form.

    Returns ``(scores, form)``: a prediction ``p`` scores ``scores.get(form(p), 0)``. A single
    reference answer (COCO-QA) scores 1 for a match after normalisation, 0 otherwise: COCO-QA's
    exact-match accuracy on vocabulary answers, which are stored normalised.
    """
    rules(version)
    if len(human) == 1:
        return {normalize_answer(human[0]): 1.0}, normalize_answer
    processed, form = compared_humans(human, version)
    counts = Counter(processed)
    return {a: accuracy_from_matches(k, len(processed)) for a, k in counts.items()}, form
