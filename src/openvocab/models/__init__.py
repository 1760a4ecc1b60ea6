"""Models: the recogniser factory (:mod:`~openvocab.models.factory`), its spec, streams, fusion and heads, the CLIP
backbone wrapper (ViT via transformers, our CLIP-ResNet), architecture-exact random models, checkpoints."""
