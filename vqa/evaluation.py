"""The official VQA evaluation: overall, per answer type and per question type accuracy.

Numbers equal ``vqaEval.py`` on the same files (``version`` chooses which release, see
``vqa.data.answers``), rounded as it rounds: ``round(100 * mean, 2)``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from vqa._io import read_json
from vqa.data.answers import EvalVersion, accuracy_from_matches, process_answers
from vqa.data.formats import Example, load_vqa


def read_results(path: str | os.PathLike) -> dict[int, str]:
    """Read ``[{"question_id": int, "answer": str}]``; malformed entries are errors."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{'question_id', 'answer'}} objects")
    out: dict[int, str] = {}
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: entry {i} is not an object")
        qid, ans = r.get("question_id"), r.get("answer")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise ValueError(f"{path}: entry {i} has no integer 'question_id'")
        if not isinstance(ans, str):
            raise ValueError(f"{path}: question_id {qid} has no string 'answer'")
        if qid in out:
            raise ValueError(f"{path}: question_id {qid} is answered more than once")
        out[qid] = ans
    return out


def _leave_one_out(processed: Sequence[str], records: Sequence[tuple], prediction: str) -> float:
    """Mean over human answers h of min(1, matches among the answers that differ from h / 3)."""
    if len(set(records)) == len(records):  # the usual case: every answer record is distinct
        return accuracy_from_matches(sum(a == prediction for a in processed), len(processed))
    accs = []
    for r in records:  # the official `item != gtAnsDatum` drops every identical record
        others = [p for p, o in zip(processed, records, strict=True) if o != r]
        accs.append(min(1.0, sum(p == prediction for p in others) / 3))
    return sum(accs) / len(accs)


def score_examples(
    examples: Sequence[Example], results: dict[int, str], version: EvalVersion = "current",
    answer_fields: dict[int, list[tuple]] | None = None,
) -> dict[int, float]:
    """Per-question accuracy in [0, 1].

    ``answer_fields`` holds, per question, the other fields of each answer record (id,
    confidence); records are told apart by them, as the official script compares whole dicts.
    Without it every record counts as distinct.
    """
    scores = {}
    for ex in examples:
        pred, human = process_answers(results[ex.question_id], ex.answers, version)
        fields = (answer_fields or {}).get(ex.question_id) or [(i,) for i in range(len(human))]
        recs = [(h, *f) for h, f in zip(human, fields, strict=True)]
        scores[ex.question_id] = _leave_one_out(human, recs, pred)
    return scores


def summarize(examples: Sequence[Example], scores: dict[int, float], n: int = 2) -> dict[str, Any]:
    """Official rounding: ``round(100 * mean, n)`` overall, per question type, per answer type."""
    by_q: dict[str, list[float]] = defaultdict(list)
    by_a: dict[str, list[float]] = defaultdict(list)
    for ex in examples:
        by_q[str(ex.question_type)].append(scores[ex.question_id])
        by_a[str(ex.answer_type)].append(scores[ex.question_id])

    def pct(v: list[float]) -> float:
        return round(100 * sum(v) / len(v), n)

    return {
        "overall": pct(list(scores.values())),
        "perQuestionType": {k: pct(v) for k, v in by_q.items()},
        "perAnswerType": {k: pct(v) for k, v in by_a.items()},
        "num_questions": len(scores),
    }


def check_coverage(examples: Sequence[Example], results: dict[int, str], source: str) -> None:
    """Results must answer exactly the annotated questions, as the official ``loadRes`` asserts."""
    want = {ex.question_id for ex in examples}
    missing, extra = want - results.keys(), results.keys() - want
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} question(s) unanswered, e.g. {sorted(missing)[:5]}")
        if extra:
            parts.append(f"{len(extra)} answer(s) for unknown questions, e.g. {sorted(extra)[:5]}")
        raise ValueError(f"{source}: results do not match the questions: " + "; ".join(parts))


def evaluate(
    questions: str | os.PathLike, annotations: str | os.PathLike, results: str | os.PathLike,
    version: EvalVersion = "current",
) -> dict[str, Any]:
    """Score a results file against official question and annotation files."""
    examples, _ = load_vqa(questions, annotations)
    res = read_results(results)
    check_coverage(examples, res, str(results))
    anns = {a["question_id"]: a for a in read_json(annotations)["annotations"]}
    fields = {qid: [tuple(sorted((k, repr(v)) for k, v in d.items() if k != "answer"))
                    for d in a["answers"]] for qid, a in anns.items()}
    summary = summarize(examples, score_examples(examples, res, version, fields))
    summary["eval_version"] = version
    return summary


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of overall, per answer type and per question type accuracy."""
    rows = [("overall", metrics["overall"])]
    rows += [(f"answer type: {k}", v) for k, v in sorted(metrics["perAnswerType"].items())]
    rows += [(f"question type: {k}", v) for k, v in sorted(metrics["perQuestionType"].items())]
    width = max(len(r[0]) for r in rows)
    lines = [f"VQA accuracy ({metrics['num_questions']} questions, "
             f"evaluation version '{metrics.get('eval_version', 'current')}')"]
    lines += [f"  {name:<{width}}  {value:6.2f}" for name, value in rows]
    return "\n".join(lines)
