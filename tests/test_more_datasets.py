"""VQA-CP v2, VizWiz, GQA, CLEVR and OK-VQA: loaders on fixtures in each release's layout, their
malformed files, each benchmark's metric on hand-computed cases, and one epoch of `vqa fit` on each
through the real CLI (then validate, predict and `vqa evaluate` agree)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from dataset_fixtures import CONFIGS, MAKERS
from torchmetrics.functional.classification import binary_average_precision

from vqa.benchmark import average_precision, evaluate_files, format_table
from vqa.cli import main, run
from vqa.data.accuracy import VQAAccuracy
from vqa.data.datasets import detect_format, formats, get_format
from vqa.data.datasets.vizwiz import VizWizScore
from vqa.data.example import image_paths
from vqa.data.preprocess import groups, soft_targets
from vqa.data.scoring import ExactMatch, VQAScore
from vqa.data.split import Split
from vqa.data.vocab import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(MAKERS)
# Where the one-epoch runs train (a GPU check sets {"accelerator": "gpu", "precision": "bf16-mixed"}).
TRAINER = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {name: MAKERS[name](tmp_path_factory.mktemp(name)) for name in NAMES}


def load(cfg: dict[str, Any]) -> list:
    return Split(**cfg).load()[0]


# ---------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("name", NAMES)
def test_loader_reads_the_official_layout(made: dict, name: str) -> None:
    """Every split reads, ids are unique, every image file is found where the release puts it,
    every question has answers and the categories its benchmark reports."""
    for split in ("train", "val"):
        cfg = made[name][split]
        examples, subtype = Split(**cfg).load()
        assert len({ex.question_id for ex in examples}) == len(examples) > 0
        paths = image_paths(examples, cfg["images"], data_subtype=subtype)
        assert all(p.is_file() for p in paths.values())
        assert all(ex.answers and ex.types and ex.multiple_choice_answer for ex in examples)
        assert detect_format(cfg["questions"], cfg.get("annotations")).name == name


def test_vqacp_images_come_from_both_coco_folders(made: dict) -> None:
    examples = load(made["vqacp"]["train"])
    folders = {ex.image_file.split("/")[0] for ex in examples}
    assert folders == {"train2014", "val2014"}
    ex = examples[1]
    assert ex.image_file == f"val2014/COCO_val2014_{ex.image_id:012d}.jpg"
    assert ex.types == {"answer_type": "other"} and ex.question_type == "what color is the"


def test_okvqa_keeps_ten_answers_and_knowledge_categories(made: dict) -> None:
    cfg = made["okvqa"]["train"]
    ex = load(cfg)[0]
    assert len(ex.answers) == 10 and ex.answers[:5] == ex.answers[5:]
    assert set(ex.types) == {"category"}
    assert ex.types["category"] in {"vehicles_transportation", "plants_animals", "other"}
    # Without the annotations the questions file is plain VQA (OK-VQA shares its format).
    assert detect_format(cfg["questions"]).name == "vqa"


def test_vizwiz_names_questions_by_image(made: dict) -> None:
    train, val = load(made["vizwiz"]["train"]), load(made["vizwiz"]["val"])
    assert train[3].image_id == "VizWiz_train_00000003" and train[3].question_id == 3
    assert val[3].question_id == 10**8 + 3  # unique across splits
    assert train[3].answer_type == "unanswerable" and train[3].answerable is False
    assert train[0].answerable is True and train[0].types == {"answer_type": "other"}
    fmt = get_format("vizwiz")
    assert fmt.result(val[0], "red") == {"image": "VizWiz_val_00000000.jpg", "answer": "red"}


def test_gqa_keeps_question_ids_as_written(made: dict) -> None:
    train, val = load(made["gqa"]["train"]), load(made["gqa"]["val"])
    assert train[1].extra["questionId"] == "00000001" and train[1].question_id == 1
    assert {ex.image_id for ex in val} >= {"n1001", "2354886"}
    assert val[1].image_file == "n1001.jpg"
    assert train[0].types == {"structural": "query", "semantic": "attr"}
    assert get_format("gqa").result(train[1], "yes") == {"questionId": "00000001",
                                                         "prediction": "yes"}


def test_clevr_types_come_from_the_programs_final_function(made: dict) -> None:
    train, val = load(made["clevr"]["train"]), load(made["clevr"]["val"])
    assert [ex.types for ex in train[:3]] == [
        {"question_type": "count", "function": "count"},
        {"question_type": "exist", "function": "exist"},
        {"question_type": "query_attribute", "function": "query_color"}]
    assert train[0].image_id == "CLEVR_train_000000" and val[0].question_id == 10**7
    assert get_format("clevr").result(val[2], "red") == {"question_index": 2, "answer": "red"}


def _edit(path: str, change: Callable[[Any], None]) -> None:
    data = json.loads(Path(path).read_text())
    change(data)
    Path(path).write_text(json.dumps(data))


def _first(data: Any) -> dict:
    return data[0] if isinstance(data, list) else (
        data["questions"][0] if "questions" in data else (
            data["annotations"][0] if "annotations" in data else next(iter(data.values()))))


MALFORMED = [
    ("vqacp", "questions", lambda d: d[0].update(coco_split="test2015"),
     r"vqacp_v2_train_questions.json: question_id \d+ has coco_split 'test2015'; expected one of"),
    ("vqacp", "annotations", lambda d: d[0]["answers"].pop(),
     r"annotations.json: question_id \d+ has 9 answers; the VQA format has 10"),
    ("vqacp", "questions", lambda d: d.__setitem__(0, {"questions": d[0]}),
     r"questions.json: question_id #0 has no 'image_id'|entry 0 has no 'image_id'"),
    ("okvqa", "annotations", lambda d: d["annotations"][0].update(question_type="eleven"),
     r"annotations.json: question_id \d+ has question_type 'eleven'; OK-VQA's are"),
    ("okvqa", "annotations", lambda d: d["annotations"][0].update(answers=[]),
     r"annotations.json: question_id \d+ has 0 answers"),
    ("vizwiz", "questions", lambda d: d[2].update(image="photo.jpg"),
     r"train.json: entry 2 has image 'photo.jpg'; expected a name like 'VizWiz_val_00000000.jpg'"),
    ("vizwiz", "questions", lambda d: d[1].update(answers=d[1]["answers"][:9]),
     r"train.json: image VizWiz_train_00000001.jpg has answers 9; expected a list of 10"),
    ("vizwiz", "questions", lambda d: d[0].update(answer_type="colour"),
     r"image VizWiz_train_00000000.jpg has answer_type 'colour'; expected one of"),
    ("vizwiz", "questions", lambda d: d[0].update(answerable="yes"),
     r"image VizWiz_train_00000000.jpg has answerable 'yes'; expected 0 or 1"),
    ("vizwiz", "questions", lambda d: d.append(d[0]),
     r"image VizWiz_train_00000000.jpg appears more than once"),
    ("gqa", "questions", lambda d: d["00000003"].pop("imageId"),
     r"train_balanced_questions.json: question 00000003 has no 'imageId'"),
    ("gqa", "questions", lambda d: d["00000002"]["types"].update(structural="ask"),
     r"question 00000002 has structural type 'ask'; expected one of"),
    ("gqa", "questions", lambda d: d.__setitem__("3", d["00000004"]),
     r"question 3 has the same number as question 00000003"),
    ("gqa", "questions", lambda d: d.__setitem__("q7", d["00000004"]),
     r"question q7: a GQA question id is a string of digits"),
    ("clevr", "questions", lambda d: d["questions"][4]["program"][-1].update(function="fly"),
     r"CLEVR_train_questions.json: question_index 4: the program ends in 'fly'; expected one of"),
    ("clevr", "questions", lambda d: d["questions"][1].pop("question_index"),
     r"question 1 needs an integer 'question_index'"),
    ("clevr", "questions", lambda d: d["questions"][5].update(program=[]),
     r"question_index 5 has a malformed 'program'"),
    ("clevr", "questions", lambda d: d["questions"][0].update(answer=2),
     r"question_index 0 has answer 2; expected a string"),
    ("clevr", "questions", lambda d: d["questions"][3].update(split=["train"]),
     r"question 3 needs an integer 'question_index' and a 'split' in"),
    ("clevr", "questions", lambda d: d["questions"][2]["program"][-1].update(function=["count"]),
     r"question_index 2: the program ends in \['count'\]"),
    ("gqa", "questions", lambda d: d.__setitem__("²", d["00000004"]),
     r"question ²: a GQA question id is a string of digits"),
    ("gqa", "questions", lambda d: d["00000001"].update(isBalanced="false"),
     r"question 00000001 has isBalanced 'false'; expected true or false"),
    ("vizwiz", "questions", lambda d: d[0].update(answerable=True),
     r"image VizWiz_train_00000000.jpg has answerable True; expected 0 or 1"),
]


@pytest.mark.parametrize(("name", "which", "change", "message"), MALFORMED,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_file_is_a_located_error(tmp_path: Path, name: str, which: str,
                                           change: Callable[[Any], None], message: str) -> None:
    cfg = MAKERS[name](tmp_path)["train"]
    _edit(cfg[which], change)
    with pytest.raises(ValueError, match=message):
        load(cfg)


def test_truncated_file_is_a_located_error(tmp_path: Path) -> None:
    cfg = MAKERS["gqa"](tmp_path)["train"]
    Path(cfg["questions"]).write_text(Path(cfg["questions"]).read_text()[:200])
    with pytest.raises(ValueError, match=r"train_balanced_questions.json: .*line 1"):
        load(cfg)


def test_check_data_finds_images_by_the_datasets_naming(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """`vqa check-data` on GQA (images named by imageId): a missing `n...` image is named."""
    data = MAKERS["gqa"](tmp_path)
    config = tmp_path / "gqa.yaml"
    config.write_text(yaml.safe_dump({"data": {
        "train": {**data["train"], "features": None}, "val": {**data["val"], "features": None},
        "test": None}}))  # over configs/gqa's: the images, not its feature caches
    config = [str(ROOT / CONFIGS["gqa"]), "-c", str(config)]
    main(["check-data", "-c", *config])
    assert "ok: the data can be used as configured" in capsys.readouterr().out
    (tmp_path / "images" / "n1001.jpg").unlink()
    with pytest.raises(SystemExit, match="1 problem"):
        main(["check-data", "-c", *config])
    assert f"val: {tmp_path / 'images' / 'n1001.jpg'}: image not found" in capsys.readouterr().out


def test_cache_named_otherwise_than_the_dataset_gets_a_hint(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """GQA images extracted by number (the default) do not match GQA's image ids: the check
    says which naming to extract with."""
    data = MAKERS["gqa"](tmp_path)
    main(["extract-features", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "c"),
          "--name", "resnet18", "--image_size", "32", "--device", "cpu", "--num_workers", "0"])
    with pytest.raises(SystemExit, match=r"not cached.*\(the cache names images by number, gqa "
                       r"by name: extract with --ids name\)"):
        main(["check-features", "--cache", str(tmp_path / "c"), "--questions",
              data["val"]["questions"]])


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset format 'vqa3'; expected one of "
                       r"\['clevr', 'cocoqa', 'gqa', 'okvqa', 'vizwiz', 'vqa', 'vqacp'\]"):
        Split(questions="q.json", format="vqa3")
    assert set(formats()) == {"clevr", "cocoqa", "gqa", "okvqa", "vizwiz", "vqa", "vqacp"}


# ---------------------------------------------------------------------------------------- metrics


def test_vizwiz_normalises_the_prediction_only() -> None:
    """VizWiz's vqaEval.py: the prediction is normalised, the human answers compared as written;
    the accuracy is the leave-one-out mean of min(1, matches / 3)."""
    score = VizWizScore().score
    # 3 of 10 match after the prediction's normalisation: (3 x 2/3 + 7 x 1) / 10.
    assert score("Two Dogs.", ["2 dogs"] * 3 + ["dogs"] * 7) == pytest.approx(0.9)
    # Written "Two dogs" by the humans is never matched (the VQA script would normalise them).
    humans = ["Two dogs"] * 5 + ["dog"] * 5
    assert score("two dogs", humans) == 0.0
    assert VQAScore().score("two dogs", humans) == 1.0
    # Contractions become typographic: "dont" matches "don’t", not "don't".
    assert score("dont", ["don’t"] * 10) == 1.0 and score("dont", ["don't"] * 10) == 0.0
    assert score("a red car", ["red car"] * 10) == 1.0  # articles go, as in VQA


def test_vizwiz_unanswerable_is_an_answer_like_any_other() -> None:
    score = VizWizScore().score
    assert score("unanswerable", ["unanswerable"] * 6 + ["blue"] * 4) == 1.0
    assert score("Unanswerable.", ["unanswerable"] * 2 + ["blue"] * 8) == pytest.approx(0.6)
    assert score("unanswerable", ["unsuitable"] * 10) == 0.0


def test_results_with_a_bad_id_are_a_located_error(made: dict, tmp_path: Path) -> None:
    cfg = made["gqa"]["val"]
    for bad in ([{"questionId": ["20000000"], "prediction": "no"}],
                [{"questionId": True, "prediction": "no"}]):
        (tmp_path / "r.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=r"r.json: entry 0 is not an object with a "
                           r"'questionId' \(a number or string\)"):
            evaluate_files(cfg["questions"], None, tmp_path / "r.json")


def test_average_precision_by_hand_and_against_torchmetrics() -> None:
    # Ranked: + (P 1, R 1/2), -, + (P 2/3, R 1), -: AP = 1/2 x 1 + 1/2 x 2/3.
    labels, scores = np.array([1.0, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])
    assert average_precision(labels, scores) == pytest.approx(0.5 + 1 / 3)
    # Tied scores are one threshold: at 0.5, P 1/2 and R 1/2; at 0.2, P 2/3 and R 1.
    assert average_precision(np.array([1.0, 0, 1]), np.array([0.5, 0.5, 0.2])) == \
        pytest.approx(0.25 + 1 / 3)
    rng = np.random.default_rng(0)
    labels = (rng.random(200) < 0.3).astype(np.float64)
    scores = np.round(rng.random(200), 2)  # with ties
    want = binary_average_precision(torch.tensor(scores), torch.tensor(labels).long())
    assert average_precision(labels, scores) == pytest.approx(float(want), abs=1e-6)
    # No positive (no unanswerable question): 0, as sklearn (VizWiz's script) and torchmetrics.
    assert average_precision(np.zeros(3), np.array([0.1, 0.5, 0.9])) == 0.0


def test_vizwiz_evaluation_by_hand(made: dict, tmp_path: Path) -> None:
    """val: entries 0-2 answerable (8 x colour, 2 x unsuitable), entry 3 unanswerable."""
    cfg = made["vizwiz"]["val"]
    entries = json.loads(Path(cfg["questions"]).read_text())[:4]
    Path(tmp_path / "val.json").write_text(json.dumps(entries))
    colours = [e["answers"][0]["answer"] for e in entries]
    results = [  # right (1.0); "unsuitable": 2 of 10 (0.6); wrong (0); right "unanswerable" (1.0)
        {"image": entries[0]["image"], "answer": colours[0].upper(), "answerable": 0.9},
        {"image": entries[1]["image"], "answer": "unsuitable", "answerable": 0.2},
        {"image": entries[2]["image"], "answer": "purple", "answerable": 0.8},
        {"image": entries[3]["image"], "answer": "unanswerable", "answerable": 0.1}]
    Path(tmp_path / "r.json").write_text(json.dumps(results))
    m = evaluate_files(tmp_path / "val.json", None, tmp_path / "r.json")
    assert m["dataset"] == "vizwiz" and m["num_questions"] == 4
    assert m["overall"] == round(100 * (1 + 0.6 + 0 + 1) / 4, 2)
    assert m["per"]["answer_type"] == {"other": round(100 * 1.6 / 3, 2), "unanswerable": 100.0}
    # Unanswerable is positive, ranked by 1 - answerable: 0.9 (+), 0.8, 0.2, 0.1: AP = 1.
    assert m["unanswerable_ap"] == 100.0
    # F1 of 1 - answerable > 0.5: predicted unanswerable are entries 1 (0.8) and 3 (0.9); only
    # entry 3 is: precision 1/2, recall 1, F1 2/3.
    assert m["unanswerable_f1"] == round(200 / 3, 2)
    assert "VizWiz API vqaEval.py" in format_table(m).splitlines()[0]


def test_gqa_exact_match_by_type(made: dict, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    """Answers compared as written; per structural and semantic type; unbalanced questions are
    answered but not scored (eval.py)."""
    questions = json.loads(Path(made["gqa"]["val"]["questions"]).read_text())
    keys = list(questions)[:5]  # query/attr, verify/attr, choose/attr, logical/obj, compare/rel
    subset = {k: questions[k] for k in keys}
    subset[keys[4]]["isBalanced"] = False
    Path(tmp_path / "q.json").write_text(json.dumps(subset))
    answers = [subset[k]["answer"] for k in keys]
    predictions = [answers[0], answers[1].upper(), answers[2], "maybe", answers[4]]
    Path(tmp_path / "r.json").write_text(json.dumps(
        [{"questionId": k, "prediction": p} for k, p in zip(keys, predictions, strict=True)]))
    m = evaluate_files(tmp_path / "q.json", None, tmp_path / "r.json")
    assert m["num_questions"] == 4 and m["overall"] == 50.0  # 2 of the 4 balanced
    assert m["per"]["structural"] == {"choose": 100.0, "logical": 0.0, "query": 100.0,
                                      "verify": 0.0}
    assert m["per"]["semantic"] == {"attr": round(200 / 3, 2), "obj": 0.0}
    assert ExactMatch().score("t-shirt", ["T-shirt"]) == 0.0  # no normalisation
    main(["evaluate", "--questions", str(tmp_path / "q.json"), "--results",
          str(tmp_path / "r.json"), "--out", str(tmp_path / "m.json")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == ("gqa: accuracy (4 questions), reproducing GQA's eval.py accuracy "
                          "(exact match over balanced questions)")
    assert json.loads((tmp_path / "m.json").read_text())["per"] == m["per"]


def test_clevr_exact_match_by_final_function(made: dict, tmp_path: Path) -> None:
    cfg = made["clevr"]["val"]
    qs = json.loads(Path(cfg["questions"]).read_text())["questions"]
    results = [{"question_index": q["question_index"],
                "answer": q["answer"] if q["program"][-1]["function"] != "count" else "7"}
               for q in qs]  # every count question wrong, the rest right
    Path(tmp_path / "r.json").write_text(json.dumps(results))
    m = evaluate_files(cfg["questions"], None, tmp_path / "r.json")
    n_count = sum(q["program"][-1]["function"] == "count" for q in qs)
    assert m["overall"] == round(100 * (len(qs) - n_count) / len(qs), 2)
    assert m["per"]["function"] == {"count": 0.0, "exist": 100.0, "query_color": 100.0}
    assert m["per"]["question_type"] == {"count": 0.0, "exist": 100.0, "query_attribute": 100.0}


def test_vqacp_and_okvqa_use_the_official_vqa_accuracy(made: dict, tmp_path: Path) -> None:
    # VQA-CP: 7 of 10 give the colour, one says "yes", one "2": 1.0, 0.3, 0.3, 0 for a miss.
    cfg = made["vqacp"]["val"]
    anns = json.loads(Path(cfg["annotations"]).read_text())
    guesses = ["colour", "yes", "2", "purple"]
    results = [{"question_id": a["question_id"], "answer": a["multiple_choice_answer"]
                if guesses[i % 4] == "colour" else guesses[i % 4]} for i, a in enumerate(anns)]
    Path(tmp_path / "r.json").write_text(json.dumps(results))
    m = evaluate_files(cfg["questions"], cfg["annotations"], tmp_path / "r.json")
    want = [[1.0, 0.3, 0.3, 0.0][i % 4] for i in range(len(anns))]
    assert m["dataset"] == "vqacp" and m["overall"] == round(100 * sum(want) / len(want), 2)
    assert m["per"]["answer_type"] == {"other": m["overall"]}
    # OK-VQA: 5 answers given twice, so one annotator counts 2 matches (0.6), two count 4 (1.0).
    score = VQAScore().score
    five = ["ponytail", "braid", "ponytail", "bun", "pony tail"]
    assert score("braid", five + five) == pytest.approx(0.6)
    assert score("ponytail", five + five) == 1.0


def test_scorers_soft_targets_equal_their_scores() -> None:
    """The target read at any vocabulary answer is the benchmark's score of that prediction."""
    vocab = Vocabulary(["2 dogs", "dogs", "unanswerable", "don’t", "t-shirt", "blue"])
    cases = [(VizWizScore(), ["2 dogs"] * 3 + ["dogs"] * 5 + ["Two dogs"] * 2),
             (VizWizScore(), ["unanswerable"] * 2 + ["don’t"] * 8),
             (ExactMatch(), ["t-shirt"]), (VQAScore(), ["blue"] * 4 + ["dogs"] * 6),
             (VQAScore(), ["Two dogs."])]  # one reference answer (COCO-QA): normalised match
    for scorer, humans in cases:
        from vqa.data.example import Example

        [(index, values)] = soft_targets([Example(0, 0, "q", tuple(humans))], vocab, scorer)
        dense = dict(zip(index, values, strict=True))
        for i, answer in enumerate(vocab.tokens):
            assert dense.get(i, 0.0) == pytest.approx(scorer.score(answer, humans)), (scorer, answer)


def test_validation_metric_without_categories_and_with_unscored_questions() -> None:
    """No category axis (G = 0) still counts every question overall; questions the benchmark
    does not score (GQA's unbalanced) count nowhere."""
    metric = VQAAccuracy([])
    target = torch.eye(2)[[0, 0, 0, 0]]
    logits = torch.tensor([[1.0, 0], [0, 1], [1, 0], [1, 0]])  # right, wrong, right, right
    metric.update(logits, target, torch.zeros(4, 0, dtype=torch.long))
    assert float(metric.compute()[""]) == 75.0
    metric.reset()
    metric.update(logits, target, torch.zeros(4, 0, dtype=torch.long),
                  torch.tensor([True, True, True, False]))
    assert float(metric.compute()[""]) == pytest.approx(200 / 3)


def test_validation_metric_reports_every_axis() -> None:
    """GQA-style categories on two axes: each question counts once overall and once per axis."""
    from vqa.data.example import Example

    examples = [Example(i, 0, "q", ("a",), types={"structural": s, "semantic": m})
                for i, (s, m) in enumerate([("query", "attr"), ("verify", "attr"),
                                            ("query", "rel")])]
    table, names = groups(examples)
    assert names == ["semantic/attr", "semantic/rel", "structural/query", "structural/verify"]
    metric = VQAAccuracy(names)
    target = torch.eye(2)[[0, 0, 0]]  # answer 0 is right for every question
    logits = torch.tensor([[1.0, 0], [0, 1], [1, 0]])  # right, wrong, right
    metric.update(logits, target, table)
    got = {k: float(v) for k, v in metric.compute().items()}
    assert got == pytest.approx({"": 200 / 3, "semantic/attr": 50.0, "semantic/rel": 100.0,
                                 "structural/query": 100.0, "structural/verify": 0.0})


# ------------------------------------------------------------------------------------ vqa fit


def _features(data: dict[str, Any], out: Path) -> dict[str, list[str]]:
    """Extract each image folder (ResNet-18, random weights, 64 px: a 2 x 2 x 512 grid) through
    `vqa extract-features`; return each split's caches (the folders inside its images folder)."""
    caches = {}
    for key, folder in data["images"].items():
        caches[key] = out / key
        main(["extract-features", "--images", str(folder), "--out", str(caches[key]),
              "--name", "resnet18", "--image_size", "64", "--batch_size", "8",
              "--num_workers", "0", "--device", "cpu", "--ids", data["ids"]])
    return {split: [str(caches[k]) for k, folder in data["images"].items()
                    if Path(folder).is_relative_to(data[split]["images"])]
            for split in ("train", "val")}


def _fit_one_epoch(name: str, tmp_path: Path) -> tuple[dict[str, Any], list[str], str]:
    """In ``tmp_path`` (the working directory): the dataset, its feature caches, an overlay on its
    config (one epoch, CPU, fp32, run folder run/, results.json), and
    one epoch of `vqa fit`. Returns the data, the config arguments and the metric's name."""
    data = MAKERS[name](tmp_path / "data")
    caches = _features(data, tmp_path / "features")
    metric = get_format(data["train"]["format"]).scorer("current").metric
    overlay = {
        "trainer": {"max_epochs": 1, **TRAINER, "enable_progress_bar": False,
                    "default_root_dir": "run"},
        "results": {"path": "results.json"},
        "data": {"train": {**data["train"], "features": caches["train"]},
                 "val": {**data["val"], "features": caches["val"]}, "test": None,
                 "batch_size": 8, "num_workers": 0, "cache_dir": "cache"}}
    Path("overlay.yaml").write_text(yaml.safe_dump(overlay))
    args = ["-c", str(ROOT / CONFIGS[name]), "-c", "overlay.yaml"]
    main(["fit", *args])
    assert Path("run/checkpoints/best.ckpt").is_file()
    return {**data, "caches": caches}, args, metric


@pytest.mark.slow  # five trainings through the CLI
@pytest.mark.parametrize("name", NAMES)
def test_fit_one_epoch_then_validate_predict_evaluate(name: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`vqa fit` with the dataset's config, on cached features, for one epoch; `vqa validate`
    logs the benchmark's metric, `vqa predict` writes the benchmark's results file, and
    `vqa evaluate` (recognising the dataset) gives the same number."""
    monkeypatch.chdir(tmp_path)
    data, args, metric = _fit_one_epoch(name, tmp_path)
    caches = data["caches"]
    cli = run(["validate", *args, "--ckpt_path", "run/checkpoints/best.ckpt"])
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert f"val/{metric}" in logged and 0 <= logged[f"val/{metric}"] <= 100
    main(["predict", *args, "--ckpt_path", "run/checkpoints/best.ckpt"])
    val = data["val"]
    m = evaluate_files(val["questions"], val.get("annotations"), "results.json")
    assert m["dataset"] == name
    assert m["overall"] == pytest.approx(logged[f"val/{metric}"], abs=0.006)
    for axis, values in m["per"].items():
        for value, pct in values.items():
            key = value.replace("/", "_") if len(m["per"]) == 1 else f"{axis}/{value}"
            assert pct == pytest.approx(logged[f"val/{metric}/{key}"], abs=0.006), key
    if name == "vizwiz":
        assert all("answerable" in r for r in json.loads(Path("results.json").read_text()))
        assert m["unanswerable_ap"] == pytest.approx(logged["val/unanswerable_ap"], abs=0.006)
    problems = run(["check-features", "--cache", *caches["val"], "--questions", val["questions"]])
    assert problems is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vizwiz", "gqa"])
def test_ddp_validation_equals_single_process(name: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """2 CPU processes (`vqa validate` under DDP): per-category sums and the answerability
    average precision (gathered predictions) equal the single-process numbers."""
    from test_distributed import DDP, last_metrics, run_vqa

    monkeypatch.chdir(tmp_path)
    _, args, _ = _fit_one_epoch(name, tmp_path)
    ckpt = ["--ckpt_path", "run/checkpoints/best.ckpt"]
    main(["validate", *args, *ckpt])
    single = last_metrics(tmp_path / "run")
    run_vqa(["validate", *args, *ckpt, *DDP], tmp_path)
    ddp = last_metrics(tmp_path / "run")
    assert ddp.keys() == single.keys()
    assert len([k for k in single if k.count("/") >= 2]) >= 2  # the categories are logged
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5 if key.endswith("loss") else 1e-9), key


TOY_FORMAT = '''
"""A dataset kept outside the package: a CSV of image,question,answer."""
import csv

from vqa.data.format import DataFormat
from vqa.data.example import Example
from vqa.data.scoring import ExactMatch


def read(questions, annotations=None):
    with open(questions, newline="") as f:
        rows = list(csv.DictReader(f))
    return [Example(i, r["image"], r["question"], (r["answer"],), None, None, r["answer"],
                    image_file=r["image"] + ".png", types={"kind": r["kind"]})
            for i, r in enumerate(rows)], None


FORMAT = DataFormat("toy", read, lambda version: ExactMatch("toy exact match"),
                    lambda data, annotations: False, image_ids="name")
'''


def test_a_dataset_is_one_module_and_one_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A format module outside the package (named by `format`) plus a config train through
    `vqa fit`, with its own metric and categories: no other code is involved."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    Path("toy_format.py").write_text(TOY_FORMAT)
    from dataset_fixtures import COLOURS, _image

    for split, n in (("train", 24), ("val", 8)):
        rows = ["image,question,answer,kind"]
        for k in range(n):
            colour = list(COLOURS)[k % 3]
            _image(tmp_path / "img" / f"{split}{k}.png", colour)
            rows.append(f"{split}{k},what color is it,{colour},{'warm' if k % 3 == 0 else 'cold'}")
        Path(f"{split}.csv").write_text("\n".join(rows))
    config = {
        "trainer": {"max_epochs": 1, "logger": False, "enable_progress_bar": False,
                    "default_root_dir": "toy"},
        "data": {split: {"format": "toy_format", "questions": f"{split}.csv", "images": "img",
                         "annotations": None} for split in ("train", "val")}
        | {"image_size": 32, "cache_dir": None}}
    Path("toy.yaml").write_text(yaml.safe_dump(config))
    caplog.set_level("INFO")
    cli = run(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), "-c", "toy.yaml"])
    logged = cli.trainer.callback_metrics
    assert {"val/acc", "val/acc/warm", "val/acc/cold"} <= logged.keys()
    assert Path("toy/checkpoints/best.ckpt").is_file()
    assert "val/acc reproduces toy exact match" in caplog.text
