"""Exports of trained tokenizers to formats that run without PyTorch (``speechtok export ...``)."""
