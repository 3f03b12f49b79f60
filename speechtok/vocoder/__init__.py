"""Mel → waveform vocoders."""
