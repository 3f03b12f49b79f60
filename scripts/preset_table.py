"""Print the SiTok preset parameter table of docs/sitok.md (models built on the meta device).

    python scripts/preset_table.py
"""
from __future__ import annotations

import time

import torch

from speechtok.models.sitok import SiTok
from speechtok.models.sitok_config import PRESETS

PUBLISHED = {"sitok-s": 0.63e9, "sitok-b": 0.88e9, "sitok-l": 1.12e9, "sitok-xl": 1.61e9}


def main() -> None:
    print("| preset | width | MLP | heads | enc / dec / CTC layers | parameters | enc / dec / CTC | paper | difference | meta build |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, cfg in PRESETS.items():
        started = time.perf_counter()
        with torch.device("meta"):
            model = SiTok(cfg)
        seconds = time.perf_counter() - started
        n = sum(p.numel() for p in model.parameters())
        parts = " / ".join(f"{sum(p.numel() for p in getattr(model, m).parameters()) / 1e6:,.1f}"
                           for m in ("encoder", "decoder", "ctc_head"))
        paper = PUBLISHED.get(name)
        published = f"{paper / 1e9:.2f} B" if paper else "–"
        difference = f"{100 * (n - paper) / paper:+.1f} %" if paper else "–"
        print(f"| `{name}` | {cfg.dim} | {cfg.mlp_dim} | {cfg.heads} | {cfg.encoder_layers} / {cfg.decoder_layers} / "
              f"{cfg.ctc_layers} | {n / 1e6:,.1f} M | {parts} M | {published} | {difference} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
