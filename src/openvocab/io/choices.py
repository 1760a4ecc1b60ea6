"""The input choices a recipe or a command can name (no heavy imports: the CLI's ``--help`` reads them)."""

from __future__ import annotations

from openvocab.registry import Registry

#: Test/train frame samplers (``SamplerSpec.kind``): ``--sampler`` help and recipe validation read this.
SAMPLERS = Registry("sampler")
SAMPLERS.register("uniform", "openvocab.io.sampling:uniform_multiclip", help="TSN segments over the whole video, Text4Vis")
SAMPLERS.register("dense", "openvocab.io.sampling:dense_multiclip", help="consecutive frames at --stride, MOV")
