"""GLIPv2's VQA head (issue 26): the VQAv2 format and its validation, the world's questions, the VQA accuracy by
hand, the head's shapes and overfitting, the objective's options, and `clipdense vqa` / `eval --tasks vqa`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.data.formats.vqa import VQARecord, VQAv2, write_vqa
from clipdense.data.questions import Question, answer_vocabulary, normalize_answer
from clipdense.data.skips import SkipCounter
from clipdense.data.world.vqa import SceneObject, _colour_questions, _relation_questions, scene_questions
from clipdense.errors import ConfigError, DataError, ImageLoadError, ModelLoadError
from clipdense.evaluation.vqa import vqa_accuracy, vqa_scores
from clipdense.objectives import build_objective, objective_options
from glip_toy import Subset, fit_batch, small_world

TINY = {"channels": 32, "layers": 1, "fusion_dim": 32, "fusion_heads": 4, "layer_scale": 0.1, "image_size": 64}


def _question(qid: int, text: str, answers: tuple[str, ...], answer_type: str = "other",
              kind: str = "colour") -> Question:
    return Question(qid, text, answers, answers[0], answer_type, kind)


def _files(tmp_path: Path, subtype: str = "val2014", name: str = "COCO_val2014_{:012d}.jpg") -> tuple[Path, Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    for image_id in (1, 2):
        Image.new("RGB", (20, 16), (200, 30, 30)).save(images / name.format(image_id))
    records = [VQARecord(1, _question(10, "What colour is it?", ("red",) * 9 + ("Red.",))),
               VQARecord(2, _question(20, "How many stars?", ("2",) * 10, "number", "count")),
               VQARecord(2, _question(21, "Is it red?", ("yes",) * 10, "yes/no", "relation"))]
    questions, annotations = tmp_path / "q.json", tmp_path / "a.json"
    write_vqa(questions, annotations, records, subtype, "test")
    return images, questions, annotations


# ---------------------------------------------------------------------------------------------------- the format
def test_vqa_files_round_trip_through_the_reader(tmp_path):
    images, questions, annotations = _files(tmp_path)
    doc = json.loads(questions.read_text())
    assert doc["task_type"] == "Open-Ended" and doc["data_subtype"] == "val2014" and len(doc["questions"]) == 3
    ann = json.loads(annotations.read_text())["annotations"][0]
    assert ann["answers"][0] == {"answer": "red", "answer_confidence": "yes", "answer_id": 1}
    assert len(ann["answers"]) == 10 and ann["multiple_choice_answer"] == "red"
    reader = VQAv2(images, questions, annotations)
    assert len(reader) == 3
    sample = reader[1]
    assert sample.image.size == (20, 16) and sample.fields() == {"question"}
    assert sample.question == _question(20, "How many stars?", ("2",) * 10, "number", "count")
    assert reader.answers == ("2", "red", "yes")     # normalised, most frequent first (ties alphabetical)


def test_vqa_reader_finds_images_by_padded_id_and_by_instances_file_name(tmp_path):
    images, questions, annotations = _files(tmp_path, name="{:06d}.png")
    assert len(VQAv2(images, questions, annotations)) == 3          # {id:06d}.* when the COCO name is absent
    (images / "000001.png").rename(images / "first.png")
    (images / "000002.png").rename(images / "second.png")
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [{"id": 1, "file_name": "first.png"},
                                                {"id": 2, "file_name": "second.png"}]}))
    assert VQAv2(images, questions, annotations, instances)[0].image.size == (20, 16)
    with pytest.raises(DataError, match="none of the 3 questions' images"):
        VQAv2(images, questions, annotations)


def test_vqa_reader_refuses_broken_files_in_one_line(tmp_path):
    from clipdense.data.spec import parse_data

    images, questions, annotations = _files(tmp_path)
    with pytest.raises(DataError, match="questions"):
        parse_data(f"vqa:images={images},annotations={annotations}")
    assert parse_data(f"vqa:images={images},questions={questions},annotations={annotations}").format == "vqa"
    doc = json.loads(questions.read_text())
    del doc["questions"][0]["image_id"]
    bad = tmp_path / "bad_q.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"bad_q.json: question 10 has no integer 'image_id'"):
        VQAv2(images, bad, annotations)
    doc = json.loads(annotations.read_text())
    doc["annotations"][0]["question_id"] = 99
    bad = tmp_path / "bad_a.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"bad_a.json: annotation 0 is for question 99, which the questions file"):
        VQAv2(images, questions, bad)
    doc = json.loads(annotations.read_text())
    doc["annotations"][1]["answers"] = [{"answer": 2}]
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"bad_a.json: annotation of question 20: 'answers' .*expected a list of"):
        VQAv2(images, questions, bad)
    doc["annotations"][1]["answers"] = "two"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="expected a list of answers"):
        VQAv2(images, questions, bad)


def test_vqa_reader_skips_and_names_missing_and_unreadable_images(tmp_path):
    images, questions, annotations = _files(tmp_path)
    (images / "COCO_val2014_000000000001.jpg").unlink()
    skips = SkipCounter()
    reader = VQAv2(images, questions, annotations, skip_counter=skips)
    assert len(reader) == 2 and skips.count == 1 and "question 10" in skips.examples[0]
    (images / "COCO_val2014_000000000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageLoadError):
        reader[0]
    assert list(reader) == [] and skips.count == 3                  # the unreadable image, once per question


# ---------------------------------------------------------------------------------------------------- the world
def test_world_questions_of_a_hand_built_scene():
    red_circle, blue_star = SceneObject("red", "circle", 0.2, 0.5), SceneObject("blue", "star", 0.7, 0.5)
    green_circle = SceneObject("green", "circle", 0.45, 0.2)
    objects = [red_circle, blue_star, green_circle]
    # colour: only the star is the one thing of its shape
    assert _colour_questions(objects) == [("What colour is the star?", "blue", "other", "colour")]
    found = scene_questions(objects, ["circle", "star", "square"], np.random.default_rng(0))
    answers = {q: a for q, a, _, _ in found}
    assert answers["What colour is the star?"] == "blue"
    shape = [q for q in answers if q.startswith("What shape")]        # each colour occurs once: any of the three
    assert len(shape) == 1 and answers[shape[0]] == {"red": "circle", "blue": "star", "green": "circle"}[
        shape[0].split()[4]]
    assert answers["How many objects are there?"] == "3"
    counted = [q for q in answers if q.startswith("How many") and "objects" not in q]
    assert answers[counted[0]] == {"circles": "2", "stars": "1", "squares": "0"}[counted[0].split()[2]]
    # relations: the green circle has one thing clearly left of it (the red one) and none level with it; the blue
    # star has two on its left, the red circle none
    assert answers["What is left of the green circle?"] == "circle"
    yes_no = [q for q in answers if q.startswith("Is the")][0]
    first, second = yes_no[len("Is the "):-1].split(" left of the ")
    x = {o.name(): o.x for o in objects}
    assert answers[yes_no] == ("yes" if x[first] < x[second] else "no")
    # yes / no asked true or false with equal odds
    truths = [_relation_questions(objects, np.random.default_rng(s))[0][1] for s in range(200)]
    assert 70 < truths.count("yes") < 130


def test_world_writes_deterministic_vqa_files_and_lists_them(vqa_world):
    from clipdense.data.world.vqa import vqa_files, write_vqa_world

    questions, annotations = vqa_files(vqa_world, "val")
    before = questions.read_bytes() + annotations.read_bytes()
    write_vqa_world(vqa_world)
    assert questions.read_bytes() + annotations.read_bytes() == before
    readme = (vqa_world / "README.md").read_text()
    assert readme.count("## VQA") == 1 and "v2_OpenEnded_mscoco_{train,val}_questions.json" in readme
    anns = json.loads(annotations.read_text())["annotations"]
    assert {a["question_type"] for a in anns} <= {"colour", "shape", "count", "relation"}
    assert all(len(set(a["answers"][i]["answer"] for i in range(10))) == 1 for a in anns)


@pytest.fixture(scope="module")
def vqa_world(tmp_path_factory):
    return small_world(tmp_path_factory.mktemp("vqa-world"), 8, 4, grounding=False, vqa=True)


def test_a_world_with_vqa_files_offers_questions(vqa_world):
    from clipdense.data.readers import open_data

    reader, _, info = open_data(str(vqa_world), needs={"question", "image"}, split="val")
    sample = reader[0]
    assert sample.question is not None and len(sample.question.answers) == 10 and sample.image.size == (64, 64)
    assert info.answers and len(set(info.answers)) == len(info.answers)


# ---------------------------------------------------------------------------------------------------- the metric
def test_vqa_accuracy_hand_computed():
    ten = ["2"] * 3 + ["3"] * 7
    # 3 of 10 agree: the 3 leave-one-out subsets without one of them hold 2 matches (2/3), the 7 others 3 (1):
    # (3 x 2/3 + 7 x 1) / 10 = 0.9
    assert vqa_accuracy("2", ten) == pytest.approx(0.9)
    # 1 of 10: its own subset has 0 matches, the 9 others 1 (1/3): 9 / 3 / 10 = 0.3
    assert vqa_accuracy("red", ["red"] + ["blue"] * 9) == pytest.approx(0.3)
    # 2 of 10: (2 x 1/3 + 8 x 2/3) / 10 = 0.6
    assert vqa_accuracy("red", ["red"] * 2 + ["blue"] * 8) == pytest.approx(0.6)
    # 4 of 10: every subset holds at least 3 matches
    assert vqa_accuracy("3", ["3"] * 4 + ["4"] * 6) == 1.0
    assert vqa_accuracy("7", ten) == 0.0
    # the evaluator's normalisation on both sides
    assert vqa_accuracy("Two.", ["2"] * 10) == 1.0 and vqa_accuracy("a circle", ["circle"] * 10) == 1.0
    assert normalize_answer("Two.") == normalize_answer("2") == "2"
    assert normalize_answer("The Red-Circle!") == "red circle" and normalize_answer("dont") == "don't"
    assert normalize_answer("1.5") == "1.5" and normalize_answer("1,000") == "1000"


def test_vqa_scores_per_answer_and_question_type():
    questions = [_question(1, "a", ("red",) * 10), _question(2, "b", ("2",) * 3 + ("3",) * 7, "number", "count"),
                 _question(3, "c", ("yes",) * 10, "yes/no", "relation")]
    result = vqa_scores(["red", "2", "no"], questions)
    assert result["overall"] == pytest.approx(100 * (1 + 0.9 + 0) / 3, abs=0.01)
    assert result["per_answer_type"] == {"number": 90.0, "other": 100.0, "yes/no": 0.0}
    assert result["per_question_type"] == {"colour": 100.0, "count": 90.0, "relation": 0.0}
    assert result["counts"]["questions"] == 3
    assert Question(1, "q", ("red",) * 2 + ("blue",), "red", "other", "colour").scores(["red", "blue", "x"]) == \
        pytest.approx([2 / 3, 1 / 3, 0.0])
    assert answer_vocabulary(questions) == ["2", "red", "yes"]


# ---------------------------------------------------------------------------------------------------- the head
def test_vqa_part_shapes_and_heads_without_answers_unchanged(bundle):
    from clipdense.heads.grounding import GLIPConfig, GLIPHead
    from clipdense.heads.grounding.vqa import vqa_logits

    config = {k: v for k, v in TINY.items()}
    plain = GLIPHead(bundle, GLIPConfig(**config))
    assert plain.vqa is None and not any(k.startswith("vqa.") for k in plain.state_dict())
    saved = plain.config.to_json()
    saved.pop("answers"), saved.pop("vqa_hidden")                   # a head saved before the VQA part existed
    assert GLIPConfig.from_json(saved).answers == []
    head = GLIPHead(bundle, GLIPConfig(**config, answers=["yes", "no", "red"]))
    ids = head.tokenize(["What colour is the star?", "Is the red circle left of the blue star?"])
    logits = vqa_logits(head, [torch.rand(3, 64, 64), torch.rand(3, 48, 64)], ids)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    with pytest.raises(ConfigError, match="no VQA part"):
        vqa_logits(plain, [torch.rand(3, 64, 64)], ids[:1])
    with pytest.raises(ConfigError, match="distinct non-empty answer strings"):
        GLIPHead(bundle, GLIPConfig(**config, answers=["yes", "yes"]))
    with pytest.raises(ConfigError, match="vqa_hidden -1: expected"):
        GLIPHead(bundle, GLIPConfig(**config, answers=["yes", "no"], vqa_hidden=-1))


@pytest.mark.slow
def test_vqa_head_overfits_a_handful_of_world_questions(vqa_world):
    """The cheapest proof that learning works: VQA accuracy >= 0.9 on the questions it trained on."""
    import clipdense as cd
    from clipdense.data.readers import open_data
    from clipdense.evaluation.vqa import evaluate_vqa
    from clipdense.objectives.base import stack_collate

    torch.manual_seed(0)
    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    reader, _, info = open_data(str(vqa_world), needs={"question"})
    objective = build_objective("glipv2", bundle, objective_options("glipv2", {**TINY, "data": "vqa"}), info)
    indices = list(range(12))
    transform = objective.sample_transform()
    batch = stack_collate([transform(reader[i], torch.Generator().manual_seed(i)) for i in indices])
    fit_batch(objective, batch, 120)
    result = evaluate_vqa(objective.head, Subset(reader, indices))
    assert result["counts"]["questions"] == 12 and result["overall"] >= 90.0, result


# ---------------------------------------------------------------------------------------------------- the objective
def test_glipv2_vqa_options_refuse_bad_values(bundle, tmp_path):
    with pytest.raises(ConfigError, match="data=vqa: only --objective glipv2"):
        build_objective("glip", None, {"data": "vqa"})
    with pytest.raises(ConfigError, match="max_answers 1: expected"):
        build_objective("glipv2", None, {"data": "vqa", "max_answers": 1})
    with pytest.raises(ConfigError, match="init: only with data=vqa"):
        build_objective("glipv2", None, {"init": "runs/glip"})
    with pytest.raises(ConfigError, match="answers: the VQA vocabulary is built"):
        build_objective("glipv2", None, {"data": "vqa", "answers": ["yes"]})
    with pytest.raises(ConfigError, match="data='questions'"):
        build_objective("glipv2", None, {"data": "questions"})
    from clipdense.data.readers import DataInfo
    with pytest.raises(DataError, match="needs question data with answers"):
        build_objective("glipv2", bundle, {**TINY, "data": "vqa"}, DataInfo())
    with pytest.raises(ModelLoadError, match="init .*no such file"):
        build_objective("glipv2", bundle, {**TINY, "data": "vqa", "init": str(tmp_path / "none")},
                        DataInfo(answers=("yes", "no")))


def test_glipv2_vqa_starts_from_an_init_head_on_its_backbone_only(bundle, tmp_path):
    import clipdense as cd
    from clipdense.data.readers import DataInfo
    from clipdense.heads import save_head
    from clipdense.heads.grounding import GLIPConfig, GLIPHead

    torch.manual_seed(0)
    base = GLIPHead(bundle, GLIPConfig(**{**TINY, "channels": 16, "fusion_dim": 16}), ["red circle"])
    save_head(base, tmp_path / "glip.safetensors", bundle)
    info = DataInfo(answers=("yes", "no", "red"))
    objective = build_objective("glipv2", bundle, {"data": "vqa", "init": str(tmp_path / "glip.safetensors")}, info)
    head = objective.head
    assert head.config.channels == 16 and head.config.answers == ["yes", "no", "red"] and head.classes == ["red circle"]
    assert torch.equal(head.region.weight, base.region.weight) and head.vqa is not None
    with pytest.raises(ConfigError, match="channels=32: with init the head keeps the init head's architecture"):
        build_objective("glipv2", bundle, {"data": "vqa", "channels": 32, "init": str(tmp_path / "glip.safetensors")},
                        info)
    other = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    with pytest.raises(ModelLoadError, match="was trained on .*load the backbone it was trained on") as caught:
        build_objective("glipv2", other, {"data": "vqa", "init": str(tmp_path / "glip.safetensors")}, info)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------- interfaces
@pytest.fixture(scope="module")
def vqa_run(vqa_world, tmp_path_factory):
    from clipdense.cli.main import main

    out = tmp_path_factory.mktemp("vqa-run") / "run"
    args = ["train", "--objective", "glipv2", "--model", "tiny-vit-t8", "--pretrained", "synthworld", "--data",
            str(vqa_world), "--out", str(out), "--steps", "2", "--batch-size", "4", "--device", "cpu",
            "--objective-arg", "data=vqa"] + [x for k, v in TINY.items() for x in ("--objective-arg", f"{k}={v}")]
    assert main(args) == 0
    return out


def test_cli_vqa_answers_and_writes_json(vqa_world, vqa_run, tmp_path, capsys):
    from clipdense.cli.main import main

    image = str(vqa_world / "val" / "images" / "000000.png")
    out = tmp_path / "answers.json"
    assert main(["vqa", image, "What colour is the square?", "--head", str(vqa_run), "--top", "3", "--json",
                 str(out), "--device", "cpu"]) == 0
    found = json.loads(out.read_text())
    assert found["question"] == "What colour is the square?" and len(found["answers"]) == 3
    assert all(set(a) == {"answer", "score"} and 0 <= a["score"] <= 1 for a in found["answers"])
    assert [a["score"] for a in found["answers"]] == sorted((a["score"] for a in found["answers"]), reverse=True)


def test_cli_vqa_bad_input_is_one_line_exit_2(vqa_world, vqa_run, bundle, tmp_path, capsys):
    from clipdense.cli.main import main
    from clipdense.heads import save_head
    from clipdense.heads.grounding import GLIPConfig, GLIPHead

    image = str(vqa_world / "val" / "images" / "000000.png")
    plain = tmp_path / "plain.safetensors"
    save_head(GLIPHead(bundle, GLIPConfig(**TINY)), plain, bundle)
    cases = [([image, "  ", "--head", str(vqa_run)], "empty question"),
             ([image, "What?", "--head", str(plain)], "without a VQA part"),
             ([image, "What?", "--head", str(vqa_run), "--model", "tiny-vit-t8"], "other weights of the same"),
             ([image, "What?", "--head", str(vqa_run), "--json", str(tmp_path / "a.txt")], "ending in .json"),
             ([image, "What?", "--head", str(vqa_run), "--top", "0"], "--top")]
    for args, expected in cases:
        capsys.readouterr()
        try:
            code = main(["vqa", *args, "--device", "cpu"])
        except SystemExit as exc:          # argparse's one-line usage error
            code = exc.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and expected in err and len(err.splitlines()) == 1, (args, err)


def test_answer_in_python_batches_and_eval_task(vqa_world, vqa_run):
    import clipdense as cd
    from clipdense.evaluation import evaluate

    bundle = cd.load_model("tiny-vit-t8", pretrained="synthworld", device="cpu")
    images = [vqa_world / "val" / "images" / f"00000{i}.png" for i in range(2)]
    found = cd.answer(bundle, images, ["How many objects are there?", "What shape is the red object?"],
                      head=vqa_run, top=2)
    assert [f.question for f in found] == ["How many objects are there?", "What shape is the red object?"]
    assert all(len(f.answers) == 2 for f in found)
    with pytest.raises(ConfigError, match="one question per image"):
        cd.answer(bundle, images, ["a?"], head=vqa_run)
    result = evaluate(bundle, str(vqa_world), tasks="vqa", head=str(vqa_run), device="cpu")
    task = result["tasks"]["vqa"]
    assert task["counts"]["questions"] > 0 and 0 <= task["overall"] <= 100
    assert set(task["per_question_type"]) <= {"colour", "shape", "count", "relation"}


def test_the_page_answers_a_question_with_a_vqa_head(tmp_path, tiny_bundle, monkeypatch):
    from clipdense.heads import save_head
    from clipdense.heads.grounding import GLIPConfig, GLIPHead
    from clipdense.web import Analyser, Request, discover_heads

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    head = GLIPHead(tiny_bundle, GLIPConfig(**TINY, answers=["yes", "no", "red", "2"]))
    save_head(head, tmp_path / "heads" / "vqa.safetensors", tiny_bundle)
    (choice,) = discover_heads([tmp_path / "heads"])
    photo = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(photo)
    question = "What colour is the circle?"
    result = Analyser([choice], device="cpu")(Request(photo, "red circle, sky", pretrained=None, templates="world",
                                                       head=str(choice.path), heatmap=question))
    import clipdense as cd
    expected = cd.answer(tiny_bundle, photo, question, head=head, top=4)
    assert list(result.ranking) == expected.answers
    assert list(result.ranking.values()) == pytest.approx(expected.scores, abs=1e-5)
    assert any("answered the question" in n for n in result.notes) and result.detections is None
