"""Grounding data (issue 26): the phrases field, modulated-COCO and Flickr30k Entities on hand-written files, the
world's grounding layouts, GLIP's prompts and the positive map on the CLIP tokenizer."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdense.data.formats.grounding import (Flickr30kEntities, GroundedImage, ModulatedCoco, parse_sentence,
                                              write_modulated_coco)
from clipdense.data.phrases import Phrases, positive_map, token_spans
from clipdense.data.prompts import class_prompt, detection_phrases
from clipdense.data.readers import open_data
from clipdense.data.sample import FIELDS
from clipdense.data.transforms import crop
from clipdense.errors import DataError


def _image(folder: Path, name: str, size: tuple[int, int] = (40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(folder / name)


def _modulated(tmp_path: Path, caption: str, annotations: list[dict]) -> Path:
    _image(tmp_path / "images", "a.png")
    doc = {"images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30, "caption": caption}],
           "annotations": [{"id": i + 1, "image_id": 7, **a} for i, a in enumerate(annotations)],
           "categories": [{"id": 1, "name": "object"}]}
    path = tmp_path / "mdetr.json"
    path.write_text(json.dumps(doc))
    return path


def test_phrases_is_a_declared_field():
    assert "phrases" in FIELDS


def test_modulated_coco_groups_boxes_by_phrase_and_clips_them(tmp_path):
    caption = "a red circle left of two blue stars"
    path = _modulated(tmp_path, caption, [
        {"bbox": [1, 2, 10, 5], "tokens_positive": [[0, 12]], "phrase_ids": 0},
        {"bbox": [30, 20, 20, 20], "tokens_positive": [[21, 35]], "phrase_ids": 1},   # leaves the 40x30 image
        {"bbox": [5, 5, 4, 4], "tokens_positive": [[21, 35]], "phrase_ids": 1},
        {"bbox": [39.5, 3, 4, 4], "tokens_positive": [[21, 35]], "phrase_ids": 1},   # half a pixel once clipped
    ])
    reader = ModulatedCoco(tmp_path / "images", path)
    sample = reader[0]
    assert sample.caption == caption and sample.phrases.text == caption
    assert [sample.phrases.phrase(i) for i in range(2)] == ["a red circle", "two blue stars"]
    assert sample.boxes.tolist() == [[1, 2, 11, 7], [30, 20, 40, 30], [5, 5, 9, 9]]
    assert sample.phrases.box_phrase.tolist() == [0, 1, 1]
    assert reader.skips.count == 1 and "a.png" in reader.skips.examples[0]


def test_modulated_coco_refuses_spans_outside_the_caption(tmp_path):
    path = _modulated(tmp_path, "a red circle", [{"bbox": [1, 2, 3, 4], "tokens_positive": [[2, 40]]}])
    with pytest.raises(DataError,   # issue 32: the annotation is dropped and named; nothing usable is left
                       match=r"has a phrase span outside its caption .1 of 1.*outside the caption .12 characters"):
        ModulatedCoco(tmp_path / "images", path)


def test_modulated_coco_refuses_an_image_without_caption(tmp_path):
    path = _modulated(tmp_path, "   ", [])
    with pytest.raises(DataError, match="non-empty 'caption'"):
        ModulatedCoco(tmp_path / "images", path)


def test_modulated_coco_write_read_round_trip(tmp_path):
    _image(tmp_path / "images", "b.png")
    record = GroundedImage("b.png", 40, 30, "a cat and a dog", [[(0, 5)], [(10, 15)]],
                           [[[1.0, 2.0, 5.0, 6.0], [7.0, 8.0, 9.0, 10.0]], [[0.0, 0.0, 40.0, 30.0]]])
    write_modulated_coco(tmp_path / "out.json", [record])
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["annotations"][0]["bbox"] == [1.0, 2.0, 4.0, 4.0] and doc["annotations"][0]["tokens_positive"] == [[0, 5]]
    sample = ModulatedCoco(tmp_path / "images", tmp_path / "out.json")[0]
    assert sample.boxes.tolist() == [[1, 2, 5, 6], [7, 8, 9, 10], [0, 0, 40, 30]]
    assert sample.phrases.box_phrase.tolist() == [0, 0, 1]
    assert sample.phrases.spans == (((0, 5),), ((10, 15),))


FLICKR_XML = """<annotation><filename>{name}.jpg</filename>
<size><width>40</width><height>30</height><depth>3</depth></size>
<object><name>18</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
<object><name>18</name><name>19</name><bndbox><xmin>21</xmin><ymin>1</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>
<object><name>20</name><nobndbox>1</nobndbox></object>
<object><name>21</name><scene>1</scene><nobndbox>1</nobndbox></object>
</annotation>"""


def _flickr(tmp_path: Path, lines: list[str]) -> Path:
    root = tmp_path / "entities"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir(parents=True)
    (root / "Sentences" / "100.txt").write_text("\n".join(lines) + "\n")
    (root / "Annotations" / "100.xml").write_text(FLICKR_XML.format(name="100"))
    _image(tmp_path / "images", "100.jpg")
    return root


def test_flickr30k_entities_reader_on_hand_written_files(tmp_path):
    root = _flickr(tmp_path, [
        "[/EN#18/people Two men] watch [/EN#19/people a child] in [/EN#21/scene the park] .",
        "[/EN#19/people A kid] smiles at [/EN#18/people the men] , [/EN#19/people she] waves [/EN#20/other a flag] .",
    ])
    reader = Flickr30kEntities(root, tmp_path / "images")
    assert len(reader) == 2
    first, second = reader[0], reader[1]
    assert first.caption == "Two men watch a child in the park ."
    assert [first.phrases.phrase(i) for i in range(len(first.phrases))] == ["Two men", "a child"]
    # 1-based inclusive pixel indices -> xyxy edges; the box named by 18 and 19 belongs to both
    assert first.boxes.tolist() == [[0, 1, 10, 12], [20, 0, 30, 30], [20, 0, 30, 30]]
    assert first.phrases.box_phrase.tolist() == [0, 0, 1]
    assert second.key == "100#1"
    # the two mentions of entity 19 ("A kid", "she") are one phrase with two spans; entity 20 has no box
    assert second.phrases.spans[0] == ((0, 5), (26, 29))
    assert second.phrases.phrase(0) == "A kid she" and len(second.phrases) == 2


def test_flickr30k_markup_errors_name_the_line(tmp_path):
    with pytest.raises(DataError, match=r"x.txt:3: unclosed"):
        parse_sentence("a [/EN#3/people man walks", "x.txt:3")
    text, entities = parse_sentence("[/EN#3/people A man] runs", "x")
    assert text == "A man runs" and entities == [(3, [(0, 5)])]


def test_keep_boxes_drops_the_phrase_index_with_its_box(tmp_path):
    path = _modulated(tmp_path, "a cat and a dog", [
        {"bbox": [1, 1, 5, 5], "tokens_positive": [[0, 5]], "phrase_ids": 0},
        {"bbox": [30, 20, 5, 5], "tokens_positive": [[10, 15]], "phrase_ids": 1}])
    sample = ModulatedCoco(tmp_path / "images", path)[0]
    cropped = crop(sample, 0, 0, 15, 15)
    assert cropped.boxes.tolist() == [[1, 1, 6, 6]] and cropped.phrases.box_phrase.tolist() == [0]


def test_token_spans_on_the_clip_tokenizer(tiny_bundle):
    tokenizer = tiny_bundle.tokenizer
    text = "a red circle left of a blue star"
    # CLIP BPE: one token per word here, the start token at position 0
    assert token_spans(tokenizer, text, [[(0, 12)], [(21, 32)]]) == [[1, 2, 3], [6, 7, 8]]
    ids = tokenizer([text])[0]
    assert [int(i) for i in ids[1:4]] == [int(i) for i in tokenizer(["a red circle"])[0][1:4]]
    # a word of several BPE pieces covers all of them
    pieces = int((tokenizer(["checkerboard"])[0] != 0).sum()) - 2
    spans = token_spans(tokenizer, "two checkerboard. a star", [[(4, 16)], [(18, 24)]])
    assert spans[0] == list(range(2, 2 + pieces)) and spans[1] == [3 + pieces, 4 + pieces]   # '.' between


def test_positive_map_marks_each_box_on_its_phrase_tokens(tiny_bundle):
    phrases = Phrases("a red circle left of a blue star", (((0, 12),), ((21, 32),)), torch.tensor([1, 0, 1]))
    pm = positive_map(tiny_bundle.tokenizer, phrases, context=12)
    assert pm.shape == (3, 12)
    assert pm[0].nonzero().flatten().tolist() == [6, 7, 8] and pm[1].nonzero().flatten().tolist() == [1, 2, 3]
    assert torch.equal(pm[0], pm[2])


def test_class_prompt_and_detection_phrases():
    text, spans = class_prompt(["red circle", "blue  star"])
    assert text == "red circle. blue star." and spans == [(0, 10), (12, 21)]
    classes = ["cat", "dog", "bird", "fish", "cow"]
    labels = torch.tensor([3, 1, 3])
    g = torch.Generator().manual_seed(0)
    phrases, chosen = detection_phrases(classes, labels, negatives=2, generator=g)
    assert {1, 3} <= set(chosen) and len(chosen) == 4
    assert [phrases.phrase(int(p)) for p in phrases.box_phrase] == ["fish", "dog", "fish"]
    assert phrases.text == ". ".join(classes[c] for c in chosen) + "."
    again, chosen_again = detection_phrases(classes, labels, 2, torch.Generator().manual_seed(0))
    assert chosen_again == chosen and again.text == phrases.text
    _, base_only = detection_phrases(classes, labels, 10, torch.Generator().manual_seed(1), allowed=[1, 3, 4])
    assert sorted(base_only) == [1, 3, 4]


def test_world_writes_both_grounding_layouts_that_agree(tmp_path):
    from clipdense.data import SynthConfig, write_world
    from clipdense.data.world.grounding import write_grounding

    world = tmp_path / "world"
    write_world(SynthConfig(out=str(world), train=6, val=6, image_size=64, classify_train_per_class=0,
                            classify_val_per_class=0))
    counts = write_grounding(world)
    assert counts["val"] > 0
    reader, kind, _ = open_data(str(world), needs={"phrases"}, split="val")
    flickr = Flickr30kEntities(world / "grounding" / "flickr30k_val", world / "val" / "images")
    with open(world / "val.csv", newline="") as handle:
        captions = [row["title"] for row in csv.DictReader(handle)]
    assert len(reader) == len(flickr) == 6
    for index in range(6):
        a, b = reader[index], flickr[index]
        assert a.caption == b.caption == captions[index]
        assert torch.equal(a.boxes, b.boxes) and a.phrases.spans == b.phrases.spans
        assert torch.equal(a.phrases.box_phrase, b.phrases.box_phrase)
        for phrase in range(len(a.phrases)):
            words = a.phrases.phrase(phrase)
            assert words.split()[0] in {"a", "an", "two", "three", "four", "several"}
        coco = json.loads((world / "annotations" / "instances_val.json").read_text())
        boxes = [[x, y, x + w, y + h] for ann in coco["annotations"] if ann["image_id"] == index + 1
                 for x, y, w, h in [ann["bbox"]]]
        assert all(box in boxes for box in a.boxes.tolist())   # every grounded box is a thing's COCO box
