"""The input choices a recipe or a command can name (no heavy imports: the CLI's ``--help`` reads them)."""

from __future__ import annotations

from openvocab.registry import Registry

#: Test/train frame samplers (``SamplerSpec.kind``): ``--sampler`` help and recipe validation read this.
SAMPLERS = Registry("sampler")
SAMPLERS.register("uniform", "openvocab.io.sampling:uniform_multiclip", help="TSN segments over the whole video, Text4Vis")
SAMPLERS.register("dense", "openvocab.io.sampling:dense_multiclip", help="consecutive frames at --stride, MOV")

#: Optical-flow methods (MOV §4.1; ``openvocab.io.flow``): builders return ``fn(prev_gray, next_gray) -> (H, W, 2)``.
FLOW_METHODS = Registry("optical flow method")
FLOW_METHODS.register("tvl1", "openvocab.io.flow:_tvl1", help="Dual TV-L1, OpenCV defaults as in i3d/TSN, MOV; ~0.7 s per 224x224 pair on 2 CPU cores")
FLOW_METHODS.register("dis", "openvocab.io.flow:_dis", help="DIS, OpenCV medium preset; ~100x faster than tvl1, ~1.4 px from it on moving pixels")
FLOW_METHODS.register(
    "farneback", "openvocab.io.flow:_farneback", help="Farneback, OpenCV tutorial settings; ~50x faster than tvl1, ~1.2 px from it on moving pixels"
)
