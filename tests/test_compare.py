"""`vqa compare`: the paired bootstrap, disagreement counts, per-category differences, refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shapes_split
from dataset_fixtures import make_gqa

from vqa._io import read_json, write_json
from vqa.benchmark import evaluate_files
from vqa.cli import main
from vqa.experiments.compare import compare, paired_bootstrap, seeds_bootstrap

# Ten questions, every human answer the same: a question scores exactly 1 or 0.
TYPES = ["yes/no"] * 4 + ["number"] * 3 + ["other"] * 3
TRUTH = ["yes", "no", "yes", "no", "2", "3", "4", "red", "blue", "green"]


@pytest.fixture
def tiny_vqa(tmp_path: Path) -> tuple[str, str]:
    """A VQA-format split of ten questions whose answers are ``TRUTH``."""
    questions = {"task_type": "Open-Ended", "data_subtype": "val", "questions": [
        {"question_id": i, "image_id": i, "question": f"question {i}?"} for i in range(10)]}
    annotations = {"annotations": [
        {"question_id": i, "image_id": i, "question_type": "what", "answer_type": TYPES[i],
         "multiple_choice_answer": TRUTH[i],
         "answers": [{"answer": TRUTH[i], "answer_confidence": "yes", "answer_id": k + 1}
                     for k in range(10)]} for i in range(10)]}
    q, a = tmp_path / "questions.json", tmp_path / "annotations.json"
    write_json(q, questions)
    write_json(a, annotations)
    return str(q), str(a)


def results(path: Path, wrong: set[int], ids: range = range(10)) -> str:
    """A results file answering ``TRUTH`` except on the questions ``wrong``."""
    write_json(path, [{"question_id": i, "answer": "nope" if i in wrong else TRUTH[i]} for i in ids])
    return str(path)


def test_identical_systems_differ_by_exactly_zero(tiny_vqa: tuple[str, str], tmp_path: Path) -> None:
    assert paired_bootstrap(np.zeros(50), samples=1000) == (0.0, 0.0)
    r = results(tmp_path / "r.json", {1, 5})
    out = compare(*tiny_vqa, [r], [r])
    assert out["a"]["accuracy"] == out["b"]["accuracy"] == 80.0
    assert out["difference"] == 0.0 and out["ci95"] == [0.0, 0.0] and out["ci_contains_zero"]
    assert out["a_right_b_wrong"]["count"] == out["b_right_a_wrong"]["count"] == 0


def test_b_right_on_k_more_of_n_questions(tiny_vqa: tuple[str, str], tmp_path: Path) -> None:
    """B is right on 3 of 10 questions A gets wrong, and agrees elsewhere: the difference is
    3/10 = 30 points, and the interval brackets it within [0, 100]."""
    a, b = results(tmp_path / "a.json", {0, 4, 7}), results(tmp_path / "b.json", set())
    out = compare(*tiny_vqa, [a], [b], samples=5000, seed=1)
    assert out["difference"] == 30.0
    low, high = out["ci95"]
    assert 0 <= low < 30 < high <= 100
    assert out["ci_contains_zero"] == (low == 0)  # 0.7^10 = 2.8 % of resamples draw none of 3
    assert (out["a"]["accuracy"], out["b"]["accuracy"]) == (70.0, 100.0)
    assert compare(*tiny_vqa, [a], [b], samples=5000, seed=1)["ci95"] == [low, high]  # seeded


def test_the_bootstrap_draws_as_resampling_question_indices_does() -> None:
    """The multinomial draw over distinct differences has the distribution of the plain paired
    bootstrap (resampled indices): their percentiles agree to Monte-Carlo precision."""
    rng = np.random.default_rng(5)
    d = rng.choice([-1.0, -0.3, 0.0, 0.0, 0.6, 1.0], size=300)
    idx = rng.integers(0, len(d), size=(20000, len(d)))
    plain = np.percentile(d[idx].mean(1), [2.5, 97.5])
    assert np.allclose(paired_bootstrap(d, samples=20000, seed=2), plain, atol=0.006)
    assert not np.allclose(plain, 0, atol=0.01)  # the interval is not trivially narrow


def test_disagreements_and_per_category_differences(tiny_vqa: tuple[str, str],
                                                    tmp_path: Path) -> None:
    a = results(tmp_path / "a.json", {0, 4, 5, 8})  # wrong: yes/no 0; number 4, 5; other 8
    b = results(tmp_path / "b.json", {1, 2, 8, 9})  # wrong: yes/no 1, 2; other 8, 9
    out = compare(*tiny_vqa, [a], [b])
    assert out["a_right_b_wrong"] == {"count": 3, "question_ids": [1, 2, 9]}
    assert out["b_right_a_wrong"] == {"count": 3, "question_ids": [0, 4, 5]}
    per = out["per"]["answer_type"]
    assert per["yes/no"] == {"a": 75.0, "b": 50.0, "difference": -25.0, "n": 4}
    assert per["number"]["a"] == 33.33 and per["number"]["b"] == 100.0
    assert per["number"]["difference"] == pytest.approx(200 / 3) and per["number"]["n"] == 3
    assert per["other"]["difference"] == pytest.approx(-100 / 3)
    assert out["per"]["question_type"] == {"what": {"a": 60.0, "b": 60.0, "difference": 0.0,
                                                    "n": 10}}
    # The same numbers as `vqa evaluate`
    for system, path in (("a", a), ("b", b)):
        metrics = evaluate_files(*tiny_vqa, path)
        assert out[system]["accuracy"] == metrics["overall"]
        assert {k: v[system] for k, v in per.items()} == metrics["per"]["answer_type"]


def test_seeds_average_per_question_and_right_means_above_half(tiny_vqa: tuple[str, str],
                                                               tmp_path: Path) -> None:
    """A's two seeds disagree on question 3 (mean 0.5: not right); both miss question 6."""
    seeds = [results(tmp_path / "a0.json", {3, 6}), results(tmp_path / "a1.json", {6})]
    b = results(tmp_path / "b.json", {6})
    out = compare(*tiny_vqa, seeds, [b])
    assert out["a"]["accuracy"] == 85.0 and out["b"]["accuracy"] == 90.0
    assert out["difference"] == 5.0
    assert out["b_right_a_wrong"]["question_ids"] == [3]
    assert out["a_right_b_wrong"]["count"] == 0


def test_results_of_other_questions_are_refused(tiny_vqa: tuple[str, str], tmp_path: Path) -> None:
    a = results(tmp_path / "a.json", set())
    b = results(tmp_path / "b.json", set(), range(9))
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--questions", tiny_vqa[0], "--annotations", tiny_vqa[1], "--a", a,
              "--b", b])
    assert exit_.value.code == (f"error: {b}: does not cover the same question ids as {a}: "
                                "lacks 1 of its questions, e.g. [9]")


def test_exact_match_benchmarks_compare_their_scored_questions(tmp_path: Path) -> None:
    """GQA: the unbalanced question is not scored; ids are GQA's strings; axes its types."""
    val = make_gqa(tmp_path)["val"]
    data = read_json(val["questions"])
    right = [{"questionId": k, "prediction": q["answer"]} for k, q in data.items()]
    write_json(tmp_path / "a.json", right)
    balanced = [k for k, q in data.items() if q["isBalanced"]]
    miss = balanced[0]
    write_json(tmp_path / "b.json", [{**r, "prediction": "xyz"} if r["questionId"] == miss else r
                                     for r in right])
    out = compare(val["questions"], None, [tmp_path / "a.json"], [tmp_path / "b.json"])
    assert out["dataset"] == "gqa" and out["num_questions"] == len(balanced)
    assert out["difference"] == pytest.approx(-100 / len(balanced))
    assert out["a_right_b_wrong"]["question_ids"] == [miss]
    assert set(out["per"]) == {"structural", "semantic"}


def test_cli_on_the_shapes_val_split(shapes_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    split = shapes_split(shapes_dir, "val")
    anns = read_json(split.annotations)["annotations"]
    truth = [{"question_id": a["question_id"], "answer": a["multiple_choice_answer"]} for a in anns]
    guess = [{**r, "answer": "yes"} for r in truth]
    write_json(tmp_path / "truth.json", truth)
    write_json(tmp_path / "yes.json", guess)
    main(["compare", "--questions", split.questions, "--annotations", split.annotations,
          "--a", str(tmp_path / "yes.json"), "--b", str(tmp_path / "truth.json"),
          "--samples", "2000", "--out", str(tmp_path / "compare.json")])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "compare.json").read_text())
    a = evaluate_files(split.questions, split.annotations, tmp_path / "yes.json")
    b = evaluate_files(split.questions, split.annotations, tmp_path / "truth.json")
    assert (saved["a"]["accuracy"], saved["b"]["accuracy"]) == (a["overall"], b["overall"])
    assert saved["num_questions"] == 100 and saved["difference"] > 0
    assert not saved["ci_contains_zero"] and saved["ci95"][0] > 0
    assert f"  A      {a['overall']:6.2f}  ({tmp_path / 'yes.json'})" in printed
    assert "excludes 0" in printed and "B right, A wrong:" in printed
    for answer_type, n in (("yes/no", sum(x["answer_type"] == "yes/no" for x in anns)),):
        assert saved["per"]["answer_type"][answer_type]["n"] == n
        assert answer_type in printed
    assert len(saved["b_right_a_wrong"]["question_ids"]) == saved["b_right_a_wrong"]["count"] > 0


def test_seeds_are_resampled_when_a_side_has_several() -> None:
    """Two seeds a side, one right on every question and one wrong on every one: the questions
    add no noise (every resample of them gives the same run means), and each side's mean over
    two drawn seeds is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4. B - A is -1 with probability
    1/16 > 2.5 %, so the 95 % interval is [-100, +100] points; averaging the seeds per question
    first (the single-run interval) would say [0, 0]."""
    runs = np.array([[1.0] * 20, [0.0] * 20])  # (2 seeds, 20 questions)
    assert seeds_bootstrap(runs, runs, samples=4000, seed=3) == (-1.0, 1.0)
    assert paired_bootstrap(runs.mean(0) - runs.mean(0), samples=100) == (0.0, 0.0)


def test_one_seed_a_side_reduces_to_the_question_bootstrap() -> None:
    """With one run a side there is no seed to draw: the interval is the paired bootstrap's."""
    rng = np.random.default_rng(7)
    a, b = rng.choice([0.0, 0.3, 1.0], size=(1, 400)), rng.choice([0.0, 0.6, 1.0], size=(1, 400))
    both = seeds_bootstrap(a, b, samples=20000, seed=1)
    alone = paired_bootstrap(b[0] - a[0], samples=20000, seed=1)
    assert np.allclose(both, alone, atol=0.01) and both[1] - both[0] > 0.05
