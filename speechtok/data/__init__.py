"""Corpora: the manifest interchange format, datasets and duration-based batching."""
