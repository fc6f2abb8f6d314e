"""Offline assets: pinned registry wheels (MiniLM, text corpora), the DINOv2 conversion, image data files."""
