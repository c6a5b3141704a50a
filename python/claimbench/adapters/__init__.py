"""Adapters that run the notes' libraries (diffusers, hy3dgen) with random weights."""
