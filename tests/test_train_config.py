"""Recipes: every shipped YAML loads; overrides and refusals are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvocab.errors import InputError
from openvocab.train.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    if path.read_text().lstrip().startswith("#") and "\nevaluate:" in path.read_text():  # an evaluation recipe
        from openvocab.eval.run import load_eval_recipe

        assert load_eval_recipe(path)["protocol"] in {"full", "half", "k600"}
        return
    cfg = load_config(path)
    assert cfg.data.frames >= 1 and cfg.optim.lr > 0


def test_base_inheritance_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  temporal: ttrans\noptim:\n  lr: 5e-5\n  epochs: 30\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\noptim:\n  epochs: 2\n")
    cfg = load_config(child, ["optim.lr=1e-4", "model.token_t1d_blocks=[0, 3]", "data.val=null"])
    assert (cfg.model.primary.temporal, cfg.optim.epochs, cfg.optim.lr, cfg.model.primary.token_t1d_blocks, cfg.data.val) == ("ttrans", 2, 1e-4, [0, 3], None)
    assert isinstance(load_config(base).optim.lr, float), "PyYAML reads 5e-5 as a string; it must become a float"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["optim.lrr=1"], "unknown key 'lrr'"),
        (["modl.temporal=tap"], "unknown section"),
        (["data.frames=abc"], "expected an integer"),
        (["model.temporal=lstm"], "model.temporal must be one of"),
        (["optim.min_lr=1", "optim.lr=0.1"], "min_lr"),
        (["lr=1"], "section.key=value"),
        (["data.val_mode=whole"], "data.val_mode must be one of"),
        (["data.val_mode=videos"], "data.val_mode=videos needs data.format=activitynet"),
        (["model.rgb.temporal=lstm"], "model.temporal must be one of"),
        (["model.depth.temporal=lstm"], "model.depth.temporal must be one of"),
        (["model.rgb.temporl=tap"], "unknown key 'temporl'"),
        (["model.Rgb.temporal=tap"], "neither a model key nor a stream name"),
        (["model.flow2.model=random:tiny"], "need a fusion that combines them"),
        (["model.fusion=concat"], "model.fusion must be one of"),
        (["model.classifier=knn"], "model.classifier must be one of"),
    ],
)
def test_bad_recipes_are_refused_in_one_line(overrides, fragment):
    with pytest.raises(InputError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bad_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  temporal: [tap\n")
    with pytest.raises(InputError, match=r"bad.yaml: not valid YAML \(line"):
        load_config(bad)


def test_table2_recipes_fine_tune_the_matching_kinetics_run_on_untrimmed_activitynet():
    configs = Path(__file__).resolve().parents[1] / "configs" / "text4vis"
    main = load_config(configs / "table2_anet_vitl14_f16.yaml")
    assert (main.data.format, main.data.val_mode, main.data.frames, main.optim.accumulation) == ("activitynet", "videos", 16, 2)
    assert (main.optim.lr, main.optim.epochs, main.optim.warmup_epochs, main.model.classifier) == (5e-5, 30, 5.0, "text")
    # init_from names the run.out of a shipped Kinetics-400 recipe with the same backbone and temporal module
    source = [load_config(p) for p in configs.glob("k400_*.yaml") if load_config(p).run.out == main.model.init_from]
    assert len(source) == 1 and source[0].model.streams == main.model.streams
    hi = load_config(configs / "table2_anet_vitl14_336_f16.yaml")
    assert hi.model.model == "openai/clip-vit-large-patch14-336" and hi.data.val_mode == "videos" and hi.data.frames == 16
    assert hi.model.init_from != main.model.init_from and hi.run.out != main.run.out


def test_nested_stream_keys_coerce_and_round_trip_through_yaml(tmp_path):
    """``model.rgb.temporal=ttrans`` is the same key as the flat ``model.temporal``; a second stream is a mapping under
    its name; the saved recipe (nested) loads back to the same config and the same recogniser spec."""
    from openvocab.train.config import save_config

    flat = load_config(None, ["model.temporal=ttrans", "model.token_t1d_blocks=[1]", "model.model=random:tiny"])
    nested = load_config(None, ["model.rgb.temporal=ttrans", "model.rgb.token_t1d_blocks=[1]", "model.rgb.model=random:tiny"])
    assert flat.model == nested.model and nested.model.primary.token_t1d_blocks == [1]
    two = tmp_path / "two.yaml"
    two.write_text("model:\n  rgb: {model: random:tiny, temporal: ttrans, temporal_layers: 1}\n  rgb2: {input: rgb, train_backbone: false}\n  fusion: mean\n")
    cfg = load_config(two, ["model.rgb2.temporal_layers=2", "data.frames=4"])
    assert list(cfg.model.streams) == ["rgb", "rgb2"] and cfg.model.streams["rgb2"].model == "random:tiny", "a new stream starts from the primary's model"
    assert (cfg.model.streams["rgb2"].train_backbone, cfg.model.streams["rgb2"].temporal_layers) == (False, 2)
    save_config(cfg, tmp_path / "saved.yaml")
    assert "rgb2:" in (tmp_path / "saved.yaml").read_text()
    again = load_config(tmp_path / "saved.yaml")
    assert again.to_dict() == cfg.to_dict()
    spec = again.recognizer_spec(3)
    assert spec.to_dict() == cfg.recognizer_spec(3).to_dict() and spec.fusion == "mean" and spec.streams["rgb2"].frames == 4
