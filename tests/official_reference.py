"""A literal transcription of the official ``vqaEval.evaluate`` loop, for agreement tests.

It mutates answer dicts and compares whole dicts exactly as the official script does, and uses the
normalisation functions tested on hand-computed cases in ``test_answers.py``.
"""

import copy

from vqa.data.answers import process_digit_article, process_punctuation


def official_evaluate(questions: dict, annotations: dict, results: list, version: str) -> dict:
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
            res_ans = process_digit_article(process_punctuation(res_ans))
        gt_answers = [d["answer"] for d in gts[qid]["answers"]]
        if len(set(gt_answers)) > 1:
            for d in gts[qid]["answers"]:
                d["answer"] = process_punctuation(d["answer"])
                if version == "current":
                    d["answer"] = process_digit_article(d["answer"])
            if version == "current":
                res_ans = process_digit_article(process_punctuation(res_ans))
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
