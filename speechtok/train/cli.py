"""``speechtok train``: train or fine-tune a tokenizer from a preset, a manifest and YAML overrides."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import from_dict, load_yaml, override
from ..errors import ConfigError
from .config import TrainConfig
from .families import all_presets, family, preset_family


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a tokenizer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a tokenizer on a manifest (path, seconds, speaker, transcript).\n\n"
            "examples:\n"
            "  speechtok train --preset sitok-small --data train.tsv --valid dev.tsv \\\n"
            "      --config configs/sitok-small.yaml --out runs/sitok-small\n"
            "  speechtok train --preset vocos-small --data train.tsv --valid dev.tsv \\\n"
            "      --config configs/vocos-small.yaml --out runs/vocos-small   # the vocoder\n"
            "  speechtok train --preset holitok-small --stage 1 --data train.tsv --out runs/holitok-s1\n"
            "  speechtok train --preset holitok-small --stage 2 --init runs/holitok-s1 --data train.tsv --out runs/holitok-s2\n"
            "  speechtok train --preset sitok-small --stage decoder --init sitok-default --data train.tsv --out runs/dec\n"
            "  speechtok train --resume runs/sitok-small            # continue exactly where it stopped\n"
            "  speechtok train --resume runs/sitok-small --steps 8000   # ... and train longer\n"
            "  torchrun --nproc_per_node 8 -m speechtok.cli train --preset sitok-l ...   # multi-GPU\n\n"
            f"presets: {', '.join(all_presets())}.  The YAML file may hold 'model:' and 'train:' sections\n"
            "that override the preset and the training defaults, and for HoliTok an 'objective:' section\n"
            "(stage, loss weights, teacher; see configs/)."
        ),
    )
    p.add_argument("--preset", help="model preset to start from")
    p.add_argument("--data", help="training manifest")
    p.add_argument("--valid", help="validation manifest (optional)")
    p.add_argument("--config", help="YAML overrides with 'model:' and/or 'train:' sections")
    p.add_argument("--out", help="run directory (checkpoints, metrics.jsonl, metrics.png)")
    p.add_argument("--resume", help="run or checkpoint directory to continue from (restores everything)")
    p.add_argument("--init", help="checkpoint whose weights initialise a new run (fine-tuning)")
    p.add_argument("--steps", type=int, help="total number of steps (overrides the config)")
    p.add_argument("--stage",
                   help="training stage. HoliTok: 1 AE, 2 VAE bottleneck, 3 semantic enrichment, 0 vanilla VAE"
                        " (start 2 and 3 with --init from the previous stage's run). SiTok: 'decoder' fine-tunes"
                        " the decoder of the --init tokenizer with its encoder, quantiser and CTC head frozen")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=_run_train)


SECTIONS = ("model", "train", "objective")


def load_overrides(path: str | None) -> dict[str, Any]:
    """A run's YAML overrides (none without a file), refusing sections other than :data:`SECTIONS`."""
    overrides = load_yaml(path) if path else {}
    unknown = sorted(set(overrides) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown} (use {', '.join(map(repr, SECTIONS))})")
    return overrides


def configure(preset: Any, objective_class: type | None, overrides: dict[str, Any]) -> tuple[Any, TrainConfig, Any]:
    """A new run's model, train and objective settings: ``preset`` and the defaults under ``overrides``
    (the objective is None for a family without one)."""
    if objective_class is None and "objective" in overrides:
        raise ConfigError(f"{preset.name}: this model family has no 'objective' settings")
    objective = objective_class and from_dict(objective_class, overrides.get("objective", {}), "objective")
    return (override(preset, overrides.get("model", {}), "model"),
            from_dict(TrainConfig, overrides.get("train", {}), "train"), objective)


def _run_train(args: argparse.Namespace) -> int:
    from .state import find_checkpoint, read_trainer_state
    from .trainer import RunSpec, Trainer

    overrides = load_overrides(args.config)
    if args.resume:
        checkpoint = find_checkpoint(args.resume)
        spec = RunSpec.from_json(read_trainer_state(checkpoint)["spec"])
        if "model" in overrides and override(spec.model, overrides["model"]) != spec.model:
            raise ConfigError("--resume continues the same model; model overrides are not allowed")
        spec = spec.replace(train=override(spec.train, overrides.get("train", {}), "train"))
        run_dir = Path(args.out) if args.out else checkpoint.parent.parent
    else:
        missing = [flag for flag, value in (("--preset", args.preset), ("--data", args.data), ("--out", args.out)) if not value]
        if missing:
            raise ConfigError(f"a new run needs {', '.join(missing)} (or --resume RUN_DIR)")
        kind, preset = preset_family(args.preset)
        recipe = family(kind).recipe
        if args.stage is not None and args.stage not in recipe.stages:
            raise ConfigError(f"--stage {args.stage}: {args.preset} ({kind}) has "
                              + (f"stages {', '.join(recipe.stages)}" if recipe.stages else "no training stages"))
        model_config, train_config, objective = configure(preset, recipe.objective_class, overrides)
        if args.stage is not None:
            objective = override(objective, {"stage": int(args.stage) if args.stage.isdigit() else args.stage}, "objective")
        if getattr(objective, "requires_init", False) and not args.init:
            raise ConfigError(f"stage {objective.stage!r} fine-tunes a trained model: pass --init CHECKPOINT")
        spec = RunSpec(model_config, train_config, str(Path(args.data).resolve()),
                       str(Path(args.valid).resolve()) if args.valid else None, kind, objective)
        run_dir = Path(args.out)
    if args.steps is not None:
        spec = spec.replace(train=override(spec.train, {"steps": args.steps}))
    trainer = Trainer(spec, run_dir, resume_from=checkpoint if args.resume else None, init_from=args.init,
                      progress=not args.no_progress)
    try:
        final = trainer.run()
    finally:
        from .distributed import teardown

        # Free the DDP wrappers while their process group is still registered: freed after it (when
        # this function returns), torch 2.13 can deadlock destroying the group's gloo thread.
        del trainer
        teardown()
    if final is not None:
        print(f"last checkpoint: {final}")
    return 0


