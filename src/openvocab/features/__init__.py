"""Feature cache: frozen per-frame features on disk, extracted once (heads then train from it with
:mod:`openvocab.train.head_training`, with no video decoding and no backbone)."""
