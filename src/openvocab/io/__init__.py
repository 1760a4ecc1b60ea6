"""Video input: discovering files, decoding with PyAV, temporal samplers and batched torch preprocessing."""
