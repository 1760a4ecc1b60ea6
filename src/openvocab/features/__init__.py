"""Feature cache: frozen per-frame features on disk, and head training from it."""
