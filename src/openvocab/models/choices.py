"""The model choices a recipe or a command can name: temporal modules, classifier heads (with their label
encoders), fusions and input modalities. Importing this module is cheap (no torch): builders load on first use.
"""

from __future__ import annotations

from openvocab.registry import Registry

TEMPORAL = Registry("temporal module")
TEMPORAL.register("tap", "openvocab.models.temporal:build_tap", help="temporal average pooling, Text4Vis TAP")
TEMPORAL.register("ttrans", "openvocab.models.temporal:build_ttrans", help="temporal transformer, Text4Vis T-Trans")
TEMPORAL.register(
    "parallel",
    "openvocab.models.temporal_branch:build_parallel",
    help="temporal branch beside the frozen tower's last blocks, open-vocabulary multi-label 3.2 / Fig. 4",
)
TEMPORAL.register(
    "serial",
    "openvocab.models.temporal_branch:build_serial",
    help="the same branch blocks in series after the frozen tower, open-vocabulary multi-label Table 11",
)
#: Temporal kinds that run beside the stream's (frozen) vision tower and read its tokens (models.temporal_branch).
BRANCH_TEMPORAL = ("parallel", "serial")

#: Classifier heads (Text4Vis Tables 6/7): the label encoder that gives W̃ and whether it is open-vocabulary.
HEADS = Registry("classifier")
HEADS.register("text", "openvocab.models.heads:build_text_head", help="CLIP text tower + prompts, open vocabulary")
HEADS.register("sentence", "openvocab.models.heads:build_sentence_head", help="another text encoder (MiniLM) + learned visual projection, open vocabulary")
HEADS.register("normal", "openvocab.models.heads:build_normal_head", help="frozen random normal rows, Eq. 4, closed set")
HEADS.register("orthogonal", "openvocab.models.heads:build_orthogonal_head", help="frozen random orthogonal rows, Eq. 5, closed set")
HEADS.register("lda", "openvocab.models.heads:build_lda_head", help="frozen LDA coefficients of video features, closed set")
HEADS.register("linear", "openvocab.models.heads:build_linear_head", help="learned linear layer, the vision-only baseline")
HEADS.register(
    "coop", "openvocab.models.coop:build_coop_head", help="CoOp learned prompt context + frozen CLIP text tower, MOV Tables 1-2 baseline, open vocabulary"
)
HEADS.register(
    "dualcoop",
    "openvocab.models.dualcoop:build_dualcoop_head",
    help="DualCoOp positive + negative learned contexts, softmax over the pair, multi-label Table 1 baseline, open vocabulary",
)
HEADS.register(
    "llm-attributes",
    "openvocab.models.llm_heads:build_llm_attributes_head",
    help="CLIP text tower on LLM-written attribute prompts (model.llm: a T5 / Flan-T5), fixed LLM prompting, multi-label 3.1, open vocabulary",
)
HEADS.register(
    "llm-prompt",
    "openvocab.models.llm_heads:build_llm_prompt_head",
    help="learnable LLM prefixes + prompt transformer -> frozen CLIP text tower (model.llm), multi-label 3.1 / Fig. 3, open vocabulary",
)
HEADS.register(
    "adapter", "openvocab.models.clip_adapter:build_adapter_head", help="CLIP-Adapter visual + textual adapters, MOV Tables 1-2 baseline, open vocabulary"
)

#: How the per-modality video embeddings become one. ``mov`` and ``score`` fuse a video stream with a flow or audio
#: stream and give two embeddings (fused video, fused other) plus the frozen video's (MOV Eq. 9-12).
FUSIONS = Registry("fusion")
FUSIONS.register("identity", "openvocab.models.fusion:IdentityFusion", help="one stream, passed through")
FUSIONS.register("mean", "openvocab.models.fusion:MeanFusion", help="the mean of the L2-normalised stream embeddings")
FUSIONS.register("mov", "openvocab.models.fusion:build_mov_fusion", help="MOV cross-attention fusion of video with flow or audio, Eq. 2-8")
FUSIONS.register("score", "openvocab.models.fusion:build_score_fusion", help="MOV Table 5 score fusion: separate temporal heads, probabilities averaged")

#: Inputs a stream can read (a modality: decoding + preprocessing in io/, an encoder entry here). The builder loads the
#: stream's encoder, ``builder(source=..., dtype=...)``: another audio encoder is one more entry with the same interface.
MODALITIES = Registry("input modality")
MODALITIES.register("rgb", "openvocab.models.backbone:clip_image_tower", help="RGB frames through a CLIP image tower")
MODALITIES.register("flow", "openvocab.models.backbone:clip_image_tower", help="TV-L1 optical flow images through a copy of the CLIP image tower, MOV §4.1")
MODALITIES.register(
    "audio", "openvocab.models.backbone:ClipBackbone", help="a 128-bin log-mel spectrogram image through a copy of the CLIP image tower, MOV §4.1"
)
