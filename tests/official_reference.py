"""A literal transcription of the official ``vqaEval.py`` (VQA API), for agreement tests and timing.

Independent of ``vqa.data.answers``: the normalisation functions below are written out as the
official script has them, including their per-call cost (no memoisation, the comma regex searched
once per punctuation mark), so ``scripts/bench_eval.py`` times the official algorithm as it runs.
The evaluation loop mutates answer dicts and compares whole dicts, as the official one does.
"""

import copy
import re

from vqa.data.answers import CONTRACTIONS

MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
              "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
         ",", "?", "!"]


def processPunctuation(inText):  # noqa: N802  (the official names)
    outText = inText
    for p in PUNCT:
        if (p + " " in inText or " " + p in inText) or (re.search(COMMA_STRIP, inText) is not None):
            outText = outText.replace(p, "")
        else:
            outText = outText.replace(p, " ")
    outText = PERIOD_STRIP.sub("", outText, re.UNICODE)
    return outText


def processDigitArticle(inText):  # noqa: N802
    outText = []
    tempText = inText.lower().split()
    for word in tempText:
        word = MANUAL_MAP.setdefault(word, word)
        if word not in ARTICLES:
            outText.append(word)
    for wordId, word in enumerate(outText):
        if word in CONTRACTIONS:
            outText[wordId] = CONTRACTIONS[word]
    return " ".join(outText)


def official_evaluate(questions: dict, annotations: dict, results: list, version: str,
                      punctuation=processPunctuation, digit_article=processDigitArticle) -> dict:
    """``version`` "current" (VQA API master) or "2016" (the original release)."""
    gts = {a["question_id"]: copy.deepcopy(a) for a in annotations["annotations"]}
    res = {r["question_id"]: r for r in results}
    assert set(res) == set(gts), "Results do not correspond to current VQA set"
    acc_qa, acc_q, acc_a = [], {}, {}
    for qid in [q["question_id"] for q in questions["questions"]]:
        res_ans = res[qid]["answer"].replace("\n", " ").replace("\t", " ").strip()
        if version == "current":
            for d in gts[qid]["answers"]:
                d["answer"] = d["answer"].replace("\n", " ").replace("\t", " ").strip()
        else:
            res_ans = digit_article(punctuation(res_ans))
        gt_answers = [d["answer"] for d in gts[qid]["answers"]]
        if len(set(gt_answers)) > 1:
            for d in gts[qid]["answers"]:
                d["answer"] = punctuation(d["answer"])
                if version == "current":
                    d["answer"] = digit_article(d["answer"])
            if version == "current":
                res_ans = digit_article(punctuation(res_ans))
        gt_acc = []
        for datum in gts[qid]["answers"]:
            others = [item for item in gts[qid]["answers"] if item != datum]
            matching = [item for item in others if item["answer"] == res_ans]
            gt_acc.append(min(1, float(len(matching)) / 3))
        avg = float(sum(gt_acc)) / len(gt_acc)
        acc_qa.append(avg)
        acc_q.setdefault(gts[qid]["question_type"], []).append(avg)
        acc_a.setdefault(gts[qid]["answer_type"], []).append(avg)
    return {
        "overall": round(100 * float(sum(acc_qa)) / len(acc_qa), 2),
        "perQuestionType": {k: round(100 * float(sum(v)) / len(v), 2) for k, v in acc_q.items()},
        "perAnswerType": {k: round(100 * float(sum(v)) / len(v), 2) for k, v in acc_a.items()},
    }
