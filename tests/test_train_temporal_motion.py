"""Known-answer test of temporal modelling through the real pipeline (Text4Vis Table 8: TAP vs T-Trans).

'moving left' and 'moving right' clips contain the same frames in opposite orders, so any order-blind pooling
(TAP) is at chance, while a temporal transformer over the same frozen frame features can tell them apart.
synthetic clips -> PyAV decode -> CLIP frame features (feature cache) -> temporal module + linear head.
"""

from __future__ import annotations

import pytest

from openvocab.data.manifests import read_manifest
from openvocab.data.synth import SynthSpec, generate
from openvocab.features.cache import FeatureCache, extract_features
from openvocab.io.sampling import SamplerSpec
from openvocab.models.backbone import ClipBackbone
from openvocab.models.factory import RecognizerSpec, create_recognizer
from openvocab.train.head_training import evaluate_head, train_head


@pytest.fixture(scope="module")
def motion_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue"),
        motions=("left", "right"),
        label_factors=("motion",),
        clips_per_class=100,
        frames=8,
        size=64,
        novel_fraction=0.0,
        object_size=(0.25, 0.3),
    )
    data = generate(spec, root / "synth", seed=0)
    backbone = ClipBackbone.from_pretrained("random:tiny")
    caches = {}
    for split in ("train", "val"):
        m = read_manifest(data / f"{split}.csv", classes=data / "classes.txt")
        extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=root / split, sampler=SamplerSpec(frames=8), workers=0)
        caches[split] = FeatureCache(root / split)
    return backbone, caches


def _accuracy(backbone, caches, temporal: str) -> float:
    import torch

    torch.manual_seed(0)
    spec = RecognizerSpec.single(model="random:tiny", num_classes=2, classifier="linear", temporal=temporal, temporal_layers=1, frames=8, train_backbone=False)
    model = create_recognizer(spec, class_names=["moving left", "moving right"], backbones={"rgb": backbone})
    train_head(model, caches["train"], epochs=60, lr=3e-3, batch_size=32)
    return evaluate_head(model, caches["val"])["top1"]


def test_temporal_transformer_sees_direction_that_tap_cannot(motion_caches):
    backbone, caches = motion_caches
    tap, ttrans = _accuracy(backbone, caches, "tap"), _accuracy(backbone, caches, "ttrans")
    print(f"held-out top-1: TAP {tap:.3f}, T-Trans {ttrans:.3f} (chance 0.5)")
    assert tap <= 0.6, "TAP is order-blind: left and right motion must be at chance"
    assert ttrans >= 0.65 and ttrans >= tap + 0.2
