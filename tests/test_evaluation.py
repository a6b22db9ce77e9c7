"""The evaluator, the soft targets and the training metric all give the official numbers."""

import json
import random
from pathlib import Path

import pytest
import torch
from official_reference import official_evaluate

from vqa.benchmark import evaluate_files, format_table
from vqa.data.accuracy import VQAAccuracy
from vqa.data.datasets.vqa import load_vqa
from vqa.data.example import ANSWER_TYPES
from vqa.data.preprocess import soft_targets
from vqa.data.scoring import VQAScore
from vqa.data.vocab import Vocabulary, answer_vocabulary
from vqa.evaluation import evaluate, read_results

POOL = ["yes", "Yes", "yes!", "no", "2", "two", "Two.", "3", "a dog", "dog", "the dog.", "hot-dog",
        "hot dog", "1,000", "1000", "st. louis", "dont", "don't", "red", "Red", "red\n", "cat"]


def random_files(tmp_path: Path, n: int = 400, seed: int = 0) -> tuple[str, str, dict, dict]:
    rng = random.Random(seed)
    questions, annotations = [], []
    for i in range(n):
        base = rng.choice(POOL)
        if rng.random() < 0.3:
            answers = [base] * 10  # all identical: the two versions differ here
        else:
            answers = [base if rng.random() < 0.6 else rng.choice(POOL) for _ in range(10)]
        questions.append({"image_id": i, "question": "q?", "question_id": i})
        annotations.append({
            "question_id": i, "image_id": i, "question_type": rng.choice(["what is", "how many"]),
            "answer_type": rng.choice(ANSWER_TYPES), "multiple_choice_answer": base,
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                        for k, a in enumerate(answers)]})
    qs, anns = {"questions": questions}, {"annotations": annotations}
    (tmp_path / "q.json").write_text(json.dumps(qs))
    (tmp_path / "a.json").write_text(json.dumps(anns))
    return str(tmp_path / "q.json"), str(tmp_path / "a.json"), qs, anns


@pytest.mark.parametrize("version", ["current", "2016"])
def test_evaluator_agrees_with_official_loop(tmp_path: Path, version: str) -> None:
    q, a, qs, anns = random_files(tmp_path)
    rng = random.Random(1)
    results = [{"question_id": i, "answer": rng.choice(POOL)} for i in range(400)]
    (tmp_path / "r.json").write_text(json.dumps(results))
    ours = evaluate(q, a, tmp_path / "r.json", version)
    ref = official_evaluate(qs, anns, results, version)
    assert ours["overall"] == ref["overall"]
    assert ours["perQuestionType"] == ref["perQuestionType"]
    assert ours["perAnswerType"] == ref["perAnswerType"]
    assert ours["eval_version"] == version
    files = evaluate_files(q, a, tmp_path / "r.json", version=version)  # recognised as VQA
    assert files["dataset"] == "vqa" and files["per"]["answer_type"] == ref["perAnswerType"]
    table = format_table(files)
    assert f"release '{version}'" in table.splitlines()[0]
    row = next(r for r in table.splitlines() if "answer type: yes/no" in r)
    assert float(row.split()[-1]) == ref["perAnswerType"]["yes/no"]


def test_evaluator_known_values(tmp_path: Path) -> None:
    qs = {"questions": [{"image_id": 1, "question": "?", "question_id": i} for i in range(3)]}
    human = [["yes"] * 10, ["two"] * 2 + ["2"] + ["3"] * 7, ["Dog"] * 10]
    anns = {"annotations": [{
        "question_id": i, "image_id": 1, "question_type": "t", "answer_type": "other",
        "multiple_choice_answer": h[0],
        "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k}
                    for k, x in enumerate(h)]} for i, h in enumerate(human)]}
    (tmp_path / "q.json").write_text(json.dumps(qs))
    (tmp_path / "a.json").write_text(json.dumps(anns))
    res = [{"question_id": 0, "answer": "yes"}, {"question_id": 1, "answer": "2"},
           {"question_id": 2, "answer": "dog"}]
    (tmp_path / "r.json").write_text(json.dumps(res))
    # 1.0 + 0.9 (3 matches after normalisation) + 0.0 (identical answers, not normalised)
    assert evaluate(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "r.json")["overall"] \
        == round(100 * 1.9 / 3, 2)
    # 2016: the prediction "dog" vs raw "Dog" x 10 is still 0, and "two" stays "two": 1 match
    assert evaluate(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "r.json",
                    "2016")["overall"] == round(100 * 1.3 / 3, 2)


def test_duplicate_answer_records_follow_the_official_dict_comparison(tmp_path: Path) -> None:
    q, _, qs, anns = random_files(tmp_path, n=5)
    answers = anns["annotations"][0]["answers"]
    for d in answers:
        d.update(answer="cat", answer_id=1)  # ten identical records: each excludes all others
    answers[0]["answer"] = "dog"
    (tmp_path / "a.json").write_text(json.dumps(anns))
    results = [{"question_id": i, "answer": "cat"} for i in range(5)]
    (tmp_path / "r.json").write_text(json.dumps(results))
    ours = evaluate(q, tmp_path / "a.json", tmp_path / "r.json")
    assert ours["overall"] == official_evaluate(qs, anns, results, "current")["overall"]


@pytest.mark.parametrize(("results", "message"), [
    ([{"question_id": 0, "answer": "x"}], "4 question\\(s\\) unanswered"),
    ([{"question_id": i, "answer": "x"} for i in range(6)], "answer\\(s\\) for unknown questions"),
    ([{"question_id": 0}], "question_id 0 has no string 'answer'"),
    ([{"answer": "x"}], "entry 0 has no integer 'question_id'"),
    ([{"question_id": 0, "answer": "x"}] * 2, "question_id 0 is answered more than once"),
    ({"question_id": 0}, "expected a JSON list"),
])
def test_bad_results_are_errors(tmp_path: Path, results, message: str) -> None:
    q, a, _, _ = random_files(tmp_path, n=5)
    (tmp_path / "r.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=message):
        evaluate(q, a, tmp_path / "r.json")


@pytest.mark.parametrize("version", ["current", "2016"])
def test_soft_targets_and_metric_equal_the_official_score(tmp_path: Path, version: str) -> None:
    """Reading the soft target at a predicted vocabulary answer gives the official accuracy, so
    the training metric equals the evaluator on the same predictions."""
    q, a, qs, anns = random_files(tmp_path)
    examples, _ = load_vqa(q, a)
    answers = answer_vocabulary([ex.multiple_choice_answer for ex in examples], 1000)
    answers = Vocabulary(sorted({*answers.tokens, *(p for p in POOL if p.strip() == p)}))
    targets = soft_targets(examples, answers, VQAScore(version))
    dense = torch.zeros(len(examples), len(answers), dtype=torch.float64)
    for i, (idx, sc) in enumerate(targets):
        dense[i, idx] = torch.tensor(sc, dtype=torch.float64)
    torch.manual_seed(0)
    logits = torch.randn(len(examples), len(answers))
    pred = logits.argmax(1)
    results = [{"question_id": ex.question_id, "answer": answers.tokens[p]}
               for ex, p in zip(examples, pred.tolist(), strict=True)]
    (tmp_path / "r.json").write_text(json.dumps(results))
    scorer = VQAScore(version)
    per_question = {r["question_id"]: scorer.score(r["answer"], ex.answers)
                    for r, ex in zip(results, examples, strict=True)}
    metric = VQAAccuracy()
    types = torch.tensor([[metric.groups.index(ex.answer_type.replace("/", "_"))]
                          for ex in examples])  # (N, 1)
    for chunk in torch.arange(len(examples)).split(64):  # several updates, as in an epoch
        metric.update(logits[chunk], dense[chunk], types[chunk])
    got = metric.compute()
    # Unrounded means agree to float precision (the official rounding of a sum that lands on
    # x.xx5 can differ in the last digit with the summation order, so compare before rounding).
    assert float(got[""]) == pytest.approx(100 * sum(per_question.values()) / len(examples), abs=1e-9)
    for name in ANSWER_TYPES:
        want = [per_question[ex.question_id] for ex in examples if ex.answer_type == name]
        assert float(got[name.replace("/", "_")]) == pytest.approx(100 * sum(want) / len(want),
                                                                    abs=1e-9)
    assert evaluate(q, a, tmp_path / "r.json", version)["overall"] == \
        official_evaluate(qs, anns, results, version)["overall"]
    assert read_results(tmp_path / "r.json")[0] == results[0]["answer"]
