"""The model choices a recipe or a command can name: temporal modules, classifier heads (with their label
encoders), fusions and input modalities. Importing this module is cheap (no torch): builders load on first use.
"""

from __future__ import annotations

from openvocab.registry import Registry

TEMPORAL = Registry("temporal module")
TEMPORAL.register("tap", "openvocab.models.temporal:build_tap", help="temporal average pooling, Text4Vis TAP")
TEMPORAL.register("ttrans", "openvocab.models.temporal:build_ttrans", help="temporal transformer, Text4Vis T-Trans")

#: Classifier heads (Text4Vis Tables 6/7): the label encoder that gives W̃ and whether it is open-vocabulary.
HEADS = Registry("classifier")
HEADS.register("text", "openvocab.models.heads:build_text_head", help="CLIP text tower + prompts, open vocabulary")
HEADS.register("sentence", "openvocab.models.heads:build_sentence_head", help="another text encoder (MiniLM) + learned visual projection, open vocabulary")
HEADS.register("normal", "openvocab.models.heads:build_normal_head", help="frozen random normal rows, Eq. 4, closed set")
HEADS.register("orthogonal", "openvocab.models.heads:build_orthogonal_head", help="frozen random orthogonal rows, Eq. 5, closed set")
HEADS.register("lda", "openvocab.models.heads:build_lda_head", help="frozen LDA coefficients of video features, closed set")
HEADS.register("linear", "openvocab.models.heads:build_linear_head", help="learned linear layer, the vision-only baseline")

#: How the per-modality video embeddings become one (MOV's cross-attention fusion will be one more entry).
FUSIONS = Registry("fusion")
FUSIONS.register("identity", "openvocab.models.fusion:IdentityFusion", help="one stream, passed through")
FUSIONS.register("mean", "openvocab.models.fusion:MeanFusion", help="the mean of the L2-normalised stream embeddings")

#: Inputs a stream can read (a modality: decoding + preprocessing in io/, an encoder entry here).
MODALITIES = Registry("input modality")
MODALITIES.register("rgb", "openvocab.models.backbone:ClipBackbone", help="RGB frames through a CLIP image tower")
