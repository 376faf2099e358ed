"""Box and point prompts (benchmark.prompting, benchmark.data.prompts): sampled on hand-made masks,
seeded per (image, seed), placed in the prompt encoder's frame, and stated in every output."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config import load_config, validate
from benchmark.data.dataset import VesselDataset
from benchmark.data.layout import Pair
from benchmark.data.prompts import field_box, jittered, make_prompt, mask_box, sample_points, stack_prompts
from benchmark.engine.evaluate import evaluate
from benchmark.errors import ConfigError
from benchmark.grid import all_cells, expand_cells, fingerprint
from benchmark.metrics import score
from benchmark.models import build_backbone, text
from benchmark.models.cell_model import build_cell_model
from benchmark.models.prompted import ABSENT_LOGIT
from benchmark.prompting import PromptSpec, parse_prompt
from benchmark.report.rows import row_label
from benchmark.report.table1_stats import _comparisons
from benchmark.summary import as_summary
from tests.conftest import tiny_grid

BOX_MASK = PromptSpec("box", box="mask")
BOX_IMAGE = PromptSpec("box", box="image")
POINTS = PromptSpec("points", positive=4, negative=3)
LITE = {"name": "litemedsam", "weights": "random", "text_encoder": text.MINILM, "prompt": "Vein",
        "tal_norm": "layer", "train_norms": True}
SAM_B = {**LITE, "name": "sam_vit_b", "variant": "sam", "input_size": 64, "train_pos_embed": True}
SAM2_T = {**SAM_B, "name": "sam2_hiera_t", "input_size": 256}


def _l_shape() -> np.ndarray:
    mask = np.zeros((16, 16), dtype=bool)
    mask[2:10, 3] = True  # the vertical stroke, rows 2-9 of column 3
    mask[9, 3:9] = True  # the foot, columns 3-8 of row 9
    return mask


def test_box_of_an_l_shaped_mask_is_its_tight_box_with_inclusive_corners():
    assert mask_box(_l_shape()).tolist() == [3, 2, 8, 9]


def test_box_of_two_components_spans_both():
    mask = np.zeros((20, 20), dtype=bool)
    mask[1:3, 1:3] = True
    mask[10:13, 14:16] = True
    assert mask_box(mask).tolist() == [1, 1, 15, 12]


def test_field_box_is_the_content_region_without_padding():
    assert field_box((10, 16)).tolist() == [0, 0, 15, 9]


def test_jitter_moves_each_corner_by_at_most_its_amount_inside_the_image():
    box = np.array([1, 2, 8, 9], dtype=np.float32)
    rng = np.random.default_rng(0)
    moved = [jittered(box, 3, 12, rng) for _ in range(200)]
    assert all((np.abs(m - box) <= 3).all() and (m >= 0).all() and (m <= 11).all() for m in moved)
    assert all(m[0] <= m[2] and m[1] <= m[3] for m in moved)
    assert len({tuple(m) for m in moved}) > 50  # it does move
    assert jittered(box, 0, 12, rng).tolist() == box.tolist()


def test_points_lie_on_the_foreground_and_on_the_background_of_the_field_of_view():
    mask = _l_shape()
    for seed in range(20):
        coords, labels = sample_points(mask, (12, 14), 4, 3, np.random.default_rng(seed))
        assert labels.tolist() == [1, 1, 1, 1, 0, 0, 0]
        x, y = coords[:, 0].astype(int), coords[:, 1].astype(int)
        assert (x >= 0).all() and (x < 14).all() and (y >= 0).all() and (y < 12).all()  # never outside
        assert mask[y[:4], x[:4]].all() and not mask[y[4:], x[4:]].any()
        assert len({(a, b) for a, b in zip(x[:4], y[:4])}) == 4  # without replacement: 14 pixels to choose from


def test_points_are_the_same_for_the_same_seed_and_differ_for_another():
    mask = _l_shape()
    first = sample_points(mask, (16, 16), 4, 3, np.random.default_rng(5))
    again = sample_points(mask, (16, 16), 4, 3, np.random.default_rng(5))
    other = sample_points(mask, (16, 16), 4, 3, np.random.default_rng(6))
    assert np.array_equal(first[0], again[0]) and not np.array_equal(first[0], other[0])


def test_more_points_than_pixels_draws_with_replacement_and_no_background_pads_with_not_a_point():
    mask = np.ones((4, 4), dtype=bool)
    mask[0, 0] = False
    prompt = make_prompt(PromptSpec("points", positive=20, negative=2), mask, (1, 1), np.random.default_rng(0))
    # the field of view is pixel (0, 0) alone: no foreground there, so no prompt
    assert not prompt["present"]
    prompt = make_prompt(PromptSpec("points", positive=20, negative=2), np.ones((4, 4), bool), (4, 4),
                         np.random.default_rng(0))
    assert prompt["present"] and prompt["labels"].tolist() == [1] * 20 + [-1, -1]


def test_an_empty_mask_gives_no_oracle_prompt_while_the_whole_image_box_needs_none():
    empty = np.zeros((16, 16), dtype=bool)
    assert mask_box(empty) is None and sample_points(empty, (16, 16), 2, 2, np.random.default_rng(0)) is None
    rng = np.random.default_rng(0)
    assert not make_prompt(BOX_MASK, empty, (16, 16), rng)["present"]
    assert not make_prompt(POINTS, empty, (16, 16), rng)["present"]
    whole = make_prompt(BOX_IMAGE, empty, (16, 12), rng)
    assert whole["present"] and whole["box"].tolist() == [0, 0, 11, 15]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_an_image_without_its_prompt_is_predicted_empty_and_scored_by_the_metric_conventions(cache_dir):
    """The stated behaviour: no box, no question to the model; background everywhere, whatever the
    model would say; against an empty ground truth that scores Dice 1 and HD95 0 (metrics)."""
    model = build_backbone(LITE, cache_dir).model.eval()
    model.use_text = False
    empty = np.zeros((256, 256), dtype=bool)
    prompts = [make_prompt(BOX_MASK, empty, (256, 256), np.random.default_rng(0)),
               make_prompt(BOX_IMAGE, empty, (256, 256), np.random.default_rng(0))]
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 256, 256), stack_prompts(prompts))
    assert (logits[0] == ABSENT_LOGIT).all() and not (logits[1] == ABSENT_LOGIT).all()
    assert score((logits[0, 0] > 0).numpy(), empty) == {"dice": 1.0, "hd95": 0.0}


def _pair(tmp_path, height: int, width: int, rows: slice, cols: slice) -> Pair:
    """An image/mask pair on disk whose vessel is the rectangle rows x cols."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[rows, cols] = 255
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return Pair("rect", tmp_path / "image.png", tmp_path / "mask.png", "test")


@pytest.mark.parametrize("backbone", [LITE, SAM_B, SAM2_T], ids=["litemedsam", "sam_vit_b", "sam2_hiera_t"])
def test_a_box_reaches_the_prompt_encoder_in_its_own_frame(tmp_path, cache_dir, backbone):
    """A 150 x 300 image whose vessel fills rows 30-59 and columns 150-239 is resized to the network
    input (longer side to S, padded below): the prompt encoder must receive that region's corners in
    pixels of the S x S input (+0.5, SAM's pixel centres) and normalise them by S, so that they point
    at the same fraction of the original image."""
    size = backbone.get("input_size", 256)
    item = VesselDataset([_pair(tmp_path, 150, 300, slice(30, 60), slice(150, 240))], size, prompt=BOX_MASK)[0]
    model = build_backbone(backbone, cache_dir).model.eval()
    model.use_text = False
    assert tuple(model.prompt_encoder.input_image_size) == (size, size)
    seen = []
    encode = model.prompt_encoder.pe_layer.forward_with_coords

    def spy(coords, image_size):
        seen.append((coords.clone(), tuple(image_size)))
        return encode(coords, image_size)

    model.prompt_encoder.pe_layer.forward_with_coords = spy
    with torch.no_grad():
        model(item["image"][None], stack_prompts([item["prompt"]]))
    (coords, image_size), = seen
    assert image_size == (size, size)
    corners = (coords[0] - 0.5).flatten().tolist()  # x0, y0, x1, y1 in input pixels
    scale = size / 300
    expected = [150 * scale, 30 * scale, 240 * scale - 1, 60 * scale - 1]
    assert corners == pytest.approx(expected, abs=1.0)
    fractions = [value / size for value in corners]  # where the encoder places them, as fractions of S
    assert fractions == pytest.approx([150 / 300, 30 / 300, 240 / 300, 60 / 300], abs=1.5 / size)


def _two_images(tmp_path) -> list[Pair]:
    pairs = []
    for name, offset in (("a", 0), ("b", 20)):
        folder = tmp_path / name
        folder.mkdir()
        pair = _pair(folder, 64, 64, slice(10 + offset, 30 + offset), slice(5, 40))
        pairs.append(Pair(name, pair.image, pair.mask, "test"))
    return pairs


def test_test_prompts_depend_on_image_and_seed_only_and_training_prompts_are_drawn_anew_each_epoch(tmp_path):
    pairs = _two_images(tmp_path)

    def prompts(data: VesselDataset) -> dict[str, list]:
        return {data[i]["id"]: data[i]["prompt"]["points"].tolist() for i in range(len(data))}

    test = VesselDataset(pairs, 64, seed=1, prompt=POINTS)
    reordered = VesselDataset(pairs[::-1], 64, seed=1, prompt=POINTS)
    assert prompts(test) == prompts(reordered)  # by image, not by position
    test.set_epoch(3)
    assert prompts(test) == prompts(reordered)  # nor by epoch
    assert prompts(VesselDataset(pairs, 64, seed=2, prompt=POINTS)) != prompts(test)
    train = VesselDataset(pairs, 64, seed=1, prompt=POINTS, resample_prompts=True)
    first = prompts(train)
    train.set_epoch(1)
    assert prompts(train) != first
    train.set_epoch(0)
    assert prompts(train) == first


def test_prompt_config_is_checked_and_completed():
    assert parse_prompt({"mode": "points"}) == PromptSpec("points", positive=5, negative=5)
    assert parse_prompt(None) == parse_prompt({"mode": "text"}) == PromptSpec()
    assert parse_prompt({"mode": "box", "box": "mask"}).oracle and not parse_prompt({"mode": "box", "box": "image"}).oracle
    for raw, message in (({"mode": "boxes"}, "prompt.mode 'boxes' is not one of"),
                         ({"mode": "box"}, "needs box: image"),
                         ({"mode": "points", "box": "mask"}, "takes positive and negative, not box"),
                         ({"mode": "points", "positive": 0}, "at least one positive point"),
                         ({"mode": "box", "box": "image", "jitter": -1}, "non-negative whole number"),
                         ({"mode": "text", "box": "image"}, "takes no"),
                         ({"mode": "box", "box": "mask", "size": 3}, "unknown key")):
        with pytest.raises(ValueError, match=message):
            parse_prompt(raw)


def _lite_grid(tmp_path, methods: list[dict], baselines: list | None = None) -> dict:
    return tiny_grid(tmp_path, input_size=256, backbones={"lite": LITE}, methods=methods,
                     baselines=[] if baselines is None else baselines)


def test_bad_prompt_rows_fail_validation_naming_the_row(tmp_path):
    with pytest.raises(ConfigError, match="methods entry 'frozen': prompt.mode box needs box"):
        validate(_lite_grid(tmp_path, [{"name": "frozen", "prompt": {"mode": "box"}}]))
    unet = {"id": "unet", "name": "unet", "prompt": {"mode": "box", "box": "image"}}
    with pytest.raises(ConfigError, match="baselines entry 'unet': prompt is for SAM-family rows"):
        validate(_lite_grid(tmp_path, [], [unet]))
    with pytest.raises(ConfigError, match="would print alike"):
        validate(_lite_grid(tmp_path, [{"id": "a", "name": "frozen", "prompt": {"mode": "box", "box": "image"}},
                                       {"id": "b", "name": "frozen", "prompt": {"mode": "box", "box": "image"}}]))
    rows = [{"id": "a", "name": "frozen"}, {"id": "b", "name": "frozen", "prompt": {"mode": "box", "box": "image"}}]
    validate(_lite_grid(tmp_path, rows))  # the same label with another prompt prints another row


def test_a_stated_text_prompt_fingerprints_as_no_prompt(tmp_path):
    plain = validate(_lite_grid(tmp_path, [{"id": "lora", "name": "lora", "rank": 2}]))
    stated = validate(_lite_grid(tmp_path, [{"id": "lora", "name": "lora", "rank": 2, "prompt": {"mode": "text"}}]))
    boxed = validate(_lite_grid(tmp_path, [{"id": "lora", "name": "lora", "rank": 2, "prompt": {"mode": "box", "box": "image"}}]))
    cell = "lite-lora-bright-s0"
    assert fingerprint(expand_cells(plain)[cell], plain) == fingerprint(expand_cells(stated)[cell], stated)
    assert fingerprint(expand_cells(plain)[cell], plain) != fingerprint(expand_cells(boxed)[cell], boxed)


def test_the_default_grid_keeps_the_fingerprints_of_its_text_rows():
    """Values from config/default.yaml before prompt modes existed (commit f02a44d): its cells keep
    their results, and `make run` retrains none of them."""
    config = load_config("config/default.yaml", check_paths=False)
    cells = all_cells(config)
    assert {key: fingerprint(cells[key], config) for key in (
        "litemedsam-frozen-synth_bright-s0", "litemedsam-lora_r4-synth_dark-s0", "sam2_t-salt_r4-synth_bright-s0",
        "unet-synth_dark-s0")} == {
        "litemedsam-frozen-synth_bright-s0": "fa2ac47160b6c8d0", "litemedsam-lora_r4-synth_dark-s0": "b6f2f5af3e240768",
        "sam2_t-salt_r4-synth_bright-s0": "f8f0e006a935a9ba", "unet-synth_dark-s0": "d9a3547cd9fc503d"}


def test_a_box_row_neither_feeds_nor_trains_the_tal_and_text_plus_box_does_both(tmp_path):
    config = validate(_lite_grid(tmp_path, [{"id": "box", "name": "lora", "rank": 2, "prompt": {"mode": "box", "box": "mask"}},
                                            {"id": "tb", "name": "lora", "rank": 2, "prompt": {"mode": "text+box", "box": "mask"}}]))
    cells = expand_cells(config)
    boxed, both = (build_cell_model(cells[f"lite-{row}-bright-s0"], config) for row in ("box", "tb"))
    assert not any(name.startswith("tal.") for name in boxed.extra_trainable)
    assert not any(p.requires_grad for p in boxed.model.tal.parameters())
    assert any(name.startswith("tal.") for name in both.extra_trainable)
    prompt = stack_prompts([make_prompt(BOX_MASK, _l_shape().repeat(16, 0).repeat(16, 1), (256, 256),
                                        np.random.default_rng(0))])
    assert boxed.model.sparse_prompt(1, prompt).shape[1] == 2  # the box's two corners
    assert both.model.sparse_prompt(1, prompt).shape[1] == 3  # the TAL token, then the corners


def test_evaluation_prompts_each_image_with_its_own_box(tmp_path, cache_dir):
    """A frozen box-prompted model scored through the engine's evaluate: what a zero-shot row runs."""
    model = build_backbone(LITE, cache_dir).model
    model.use_text = False
    data = VesselDataset(_two_images(tmp_path), 256, prompt=BOX_MASK)
    seen = []
    forward = model.forward
    model.forward = lambda image, prompt=None: seen.append(prompt["box"].clone()) or forward(image, prompt)
    rows = evaluate(model, data, torch.device("cpu"), batch_size=2)
    assert [row["id"] for row in rows] == ["a", "b"]
    assert seen[0].tolist() == [data[0]["prompt"]["box"].tolist(), data[1]["prompt"]["box"].tolist()]


def _summary(method_id: str, name: str, prompt: dict | None) -> dict:
    summary = {"backbone": "lite", "method": {"id": method_id, "name": name, "label": name.upper(), "group": "peft",
                                               "rank": 4}}
    return summary if prompt is None else {**summary, "prompt": {**parse_prompt(prompt).record()}}


def test_labels_mark_oracle_rows_and_salt_is_tested_only_against_rows_of_its_prompt():
    text_salt = _summary("salt", "salt", None)
    box_lora = _summary("lora_box", "lora", {"mode": "box", "box": "mask"})
    assert row_label(text_salt, False) == "SALT r4"
    assert row_label(box_lora, False) == "LORA r4 (ground-truth box (oracle))"
    peft = {"salt": [text_salt], "lora_box": [box_lora], "lora": [_summary("lora", "lora", None)]}
    assert _comparisons(peft) == [("salt", "lora")]


def test_format_2_summaries_read_as_text_prompted():
    summary = {"format": 2, "cell": "c", "method": {"id": "lora", "group": "peft"}}
    assert as_summary(summary)["prompt"]["mode"] == "text" and not as_summary(summary)["prompt"]["oracle"]
    baseline = {"format": 2, "cell": "c", "method": {"id": "unet", "group": "baseline"}}
    assert as_summary(baseline)["prompt"]["mode"] == "none"


def test_box_jitter_moves_training_boxes_only(tmp_path):
    """MedSAM's protocol: perturbed boxes in training, the exact box at test time."""
    jitter = PromptSpec("box", box="mask", jitter=4)
    pairs = [_pair(tmp_path, 64, 64, slice(20, 30), slice(10, 40))]
    exact = VesselDataset(pairs, 64, prompt=jitter)[0]["prompt"]["box"].tolist()
    assert exact == [10, 20, 39, 29]
    train = VesselDataset(pairs, 64, prompt=jitter, resample_prompts=True)
    boxes = []
    for epoch in range(8):
        train.set_epoch(epoch)
        boxes.append(train[0]["prompt"]["box"].tolist())
    assert any(box != exact for box in boxes) and all(abs(a - b) <= 4 for box in boxes for a, b in zip(box, exact))
