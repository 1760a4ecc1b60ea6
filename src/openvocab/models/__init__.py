"""Models: the CLIP backbone wrapper and architecture-exact random model creation."""
