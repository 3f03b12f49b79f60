"""ONNX export of SiTok and HoliTok (``speechtok export onnx NAME -o DIR``), for onnxruntime without PyTorch.

Each network becomes one ONNX file with dynamic batch and time axes, exported by torch.onnx's
dynamo exporter (the TorchScript one is deprecated and fails on HoliTok's decoder); DIR/manifest.json
describes them. Three things needed care to keep the graphs equal to PyTorch:

* Symbolic ``ceil`` sizes (``-(-n // hop)``) reach the exporter as floor divisions of negative
  numbers, which onnxscript's ``operator.floordiv`` translates as truncating ``Div`` (positive
  inputs only): the padded length came out one hop short. We translate it with the sign-correct
  ``aten_floor_divide``.
* ONNX's STFT operator, as onnxruntime 1.31 computes it for SiTok's n_fft of 1920, is off by up to
  0.59 in normalised log-mel (the float32 torch.stft differs from a float64 reference by 2e-4), which
  changed about 1 code in 12. The encoder graph therefore frames the waveform itself and applies a
  float64 DFT matrix; its codes then equal ``SiTok.encode``'s on every clip we measured.
* ONNX has no complex tensors: the vocoder's inverse STFT is one transposed convolution whose kernel
  is the windowed inverse real DFT (overlap-add included), divided by the window envelope.

HoliTok's LSTMs export as ONNX LSTM nodes only when no parameter requires grad and aten.lstm's
dispatch cache is fresh (else torch.export unrolls them over time and fixes the length); the models
are exported frozen, the cache cleared around each export, and every file's input axes are checked,
since torch.onnx silently falls back to fixed sizes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..bundled import CONFIG_FILE, load_checkpoint_kind, resolve
from ..errors import CheckpointError, DataError
from ..extras import optional_import
from ..fileio import atomic_path, check_output_dir, sha256_file, write_json_atomic
from ..models.holitok import HoliTok, MelEncoder
from ..models.sitok import SiTok
from ..modules.flow_matching import guided
from ..modules.istft import inverse_dft_kernel, overlap_add
from ..vocoder.vocos import Vocos

FORMAT = "speechtok-onnx-v1"
MANIFEST = "manifest.json"
OPSET = 18
#: One ONNX file holds at most 2 GiB (protobuf); larger graphs would need external weight files.
MAX_GRAPH_BYTES = 2 ** 31 - 2 ** 24
Shape = tuple[int | str, ...]  # sizes, or the names of dynamic axes


# ------------------------------------------------------------------------------------- the graphs
class DFTLogMel(nn.Module):
    """:class:`~speechtok.mel.MelSpectrogram`'s normalised log-mel with the DFT as one float64 matmul.

    onnxruntime's STFT differs from torch.stft by up to 0.8 in the normalised log-mel of real speech
    (near-silent bins, where the log is steep; measured), which would flip codes and move latents.
    Only the bins under the filterbank's top frequency are kept in the basis.
    """

    def __init__(self, mel: nn.Module) -> None:
        super().__init__()
        self.mel = mel
        c = mel.cfg
        bins = int(torch.nonzero(mel.filterbank.sum(0)).max()) + 1
        time = torch.arange(c.n_fft, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * time * torch.arange(bins, dtype=torch.float64)[None] / c.n_fft
        window = torch.hann_window(c.n_fft, dtype=torch.float64)[:, None]
        self.register_buffer("dft", torch.cat([window * angle.cos(), -window * angle.sin()], dim=1), persistent=False)
        self.register_buffer("filterbank", mel.filterbank[:, :bins].clone(), persistent=False)

    def forward(self, x: torch.Tensor, frames: torch.Tensor | int) -> torch.Tensor:
        """A padded ``[B, T]`` signal → log-mel ``[B, n_mels, frames]`` of the windows at every hop."""
        c = self.mel.cfg
        starts = torch.arange(frames, device=x.device) * c.hop_length
        spectrum = x[:, starts[:, None] + torch.arange(c.n_fft, device=x.device)].double() @ self.dft
        real, imag = spectrum.chunk(2, dim=-1)
        magnitude = (real * real + imag * imag).sqrt().float().transpose(1, 2)
        return self.mel.normalize(torch.log(torch.matmul(self.filterbank, magnitude).clamp(min=c.log_floor)))


class SiTokEncoderGraph(nn.Module):
    """Waveform ``[B, 1, T]`` at the model rate → codes ``[B, 1, ceil(T / 1920)]`` (int64), as ``SiTok.encode``."""

    def __init__(self, model: SiTok) -> None:
        super().__init__()
        self.model = model
        self.log_mel = DFTLogMel(model.mel)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        m, c = self.model, self.model.config.mel
        x = wav.reshape(wav.shape[0], -1)
        frames = (x.shape[-1] + c.hop_length - 1) // c.hop_length
        x = F.pad(x, (c.n_fft - c.hop_length, frames * c.hop_length - x.shape[-1]))  # causal framing, as MelSpectrogram
        mel = self.log_mel(x, frames)
        stacked, mask, _ = m.stack(mel, torch.full((x.shape[0],), frames, dtype=torch.long, device=x.device))
        z = m.vq_in(m.encoder(m.encoder_in(stacked), mask))
        codebook = m.quantizer.codebook.float()  # the distances of EMAVectorQuantizer.nearest, unchunked
        distances = (codebook * codebook).sum(-1) - 2 * z.float() @ codebook.t()
        return distances.argmin(-1)[:, None, :]


class SiTokVelocityGraph(nn.Module):
    """One Euler step's velocity with token classifier-free guidance, both halves in one batch.

    ``x`` ``[B, T', stack·n_mels]`` (stacked mel at flow time ``t`` ``[B]``), codes ``[B, 1, T']``,
    ``cfg`` a scalar (1 = conditional velocity only) → velocity of ``x``'s shape. A guidance-distilled
    decoder takes ``cfg`` as its input and runs one pass (its trained range, 1 to ``guidance_max``).
    """

    def __init__(self, model: SiTok) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, codes: torch.Tensor, cfg: torch.Tensor) -> torch.Tensor:
        cond = self.model.cond_from_codes(codes)
        if self.model.config.guidance_distill:
            return self.model.velocity(x, t, cond, None, guidance=cfg.expand(x.shape[0]))
        both = self.model.velocity(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)]), None)
        batch = x.shape[0]  # slices, not chunk(2): torch.export cannot prove chunk's symbolic sizes and fixes the batch
        return guided(both[:batch], both[batch:], cfg)


class VocosGraph(nn.Module):
    """Normalised log-mel ``[B, n_mels, F]`` → waveform ``[B, 1, F·hop]``, as ``Vocos.forward``."""

    def __init__(self, vocos: Vocos) -> None:
        super().__init__()
        self.vocos = vocos
        n_fft = vocos.config.mel.n_fft
        self.register_buffer("inverse_dft", inverse_dft_kernel(n_fft), persistent=False)  # [2·bins, 1, n_fft]
        window = torch.hann_window(n_fft, dtype=torch.float64)
        self.register_buffer("window_square", (window ** 2).float().view(1, 1, n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        hop, n_fft = self.vocos.hop_length, self.vocos.config.mel.n_fft
        wav = overlap_add(*self.vocos.magnitude_phase(mel), self.inverse_dft, hop)
        envelope = F.conv_transpose1d(torch.ones_like(mel[:1, :1]), self.window_square, stride=hop)
        pad = (n_fft - hop) // 2
        return (wav / envelope.clamp(min=1e-8))[..., pad: pad + mel.shape[-1] * hop]


class HoliTokEncoderGraph(nn.Module):
    """48 kHz waveform ``[B, 1, T]`` → latents ``[B, latent_dim, ceil(T / hop)]`` (the posterior mean)."""

    def __init__(self, model: HoliTok) -> None:
        super().__init__()
        self.model = model
        self.log_mel = DFTLogMel(model.encoder.mel) if isinstance(model.encoder, MelEncoder) else None

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.log_mel is None:
            return m.analyze(wav)[:, : m.latent_dim]
        c = m.encoder.mel.cfg  # the mel front-end's framing: window j ends at sample j·hop
        x = wav.reshape(wav.shape[0], -1)
        frames = (x.shape[-1] + c.hop_length - 1) // c.hop_length
        x = F.pad(x, (c.n_fft - 1, frames * c.hop_length - x.shape[-1]))
        return m.bottleneck.posterior(m.encoder.from_mel(self.log_mel(x, frames)))[:, : m.latent_dim]


class HoliTokDecoderGraph(nn.Module):
    """Latents ``[B, latent_dim, T']`` → 48 kHz waveform ``[B, 1, T'·hop]`` (the mel head's vocoder and
    upsampler included, so every head exports one decoder)."""

    def __init__(self, model: HoliTok) -> None:
        super().__init__()
        self.model = model
        self.vocoder = VocosGraph(model.vocoder) if model.config.decoder_head == "mel" else None

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        out = self.model.synthesize(latents)
        if self.vocoder is None:
            return out
        return self.model.upsampler(self.vocoder(out)).clamp(-1.0, 1.0)


@dataclass
class Graph:
    """One ONNX file to write: the module, example inputs and every input's and output's shape."""

    name: str
    module: nn.Module
    inputs: dict[str, tuple[torch.Tensor, Shape]]
    outputs: dict[str, tuple[str, Shape]]  # name → (dtype, shape)
    description: str

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def sitok_graphs(model: SiTok) -> list[Graph]:
    c = model.config
    channels = c.mel.n_mels * c.stack
    wav = torch.zeros(2, 1, 3 * model.samples_per_token)
    graphs = [
        Graph("encoder", SiTokEncoderGraph(model), {"wav": (wav, ("batch", 1, "samples"))},
              {"codes": ("int64", ("batch", 1, "tokens"))},
              f"waveform at {model.sample_rate} Hz → codes (mel front-end included)"),
        Graph("decoder_step", SiTokVelocityGraph(model),
              {"x": (torch.zeros(2, 3, channels), ("batch", "tokens", channels)), "t": (torch.zeros(2), ("batch",)),
               "codes": (torch.zeros(2, 1, 3, dtype=torch.long), ("batch", 1, "tokens")), "cfg": (torch.tensor(1.0), ())},
              {"velocity": ("float32", ("batch", "tokens", channels))},
              "velocity of one Euler step of the flow-matching decoder, with classifier-free guidance"),
    ]
    if model.vocoder is not None:
        graphs.append(Graph("vocoder", VocosGraph(model.vocoder), {"mel": (torch.zeros(2, c.mel.n_mels, 3 * c.stack),
                                                                           ("batch", c.mel.n_mels, "frames"))},
                            {"wav": ("float32", ("batch", 1, "samples"))}, "normalised log-mel → waveform (Vocos)"))
    return graphs


def holitok_graphs(model: HoliTok) -> list[Graph]:
    d = model.latent_dim
    return [
        Graph("encoder", HoliTokEncoderGraph(model), {"wav": (torch.zeros(2, 1, 3 * model.hop_length), ("batch", 1, "samples"))},
              {"latents": ("float32", ("batch", d, "frames"))}, f"waveform at {model.sample_rate} Hz → latents (posterior mean)"),
        Graph("decoder", HoliTokDecoderGraph(model), {"latents": (torch.zeros(2, d, 3), ("batch", d, "frames"))},
              {"wav": ("float32", ("batch", 1, "samples"))}, f"latents → waveform at {model.sample_rate} Hz"),
    ]


# ---------------------------------------------------------------------------------------- export
def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _dynamic_shapes(graph: Graph) -> tuple[dict[int, Any], ...]:
    dims: dict[str, Any] = {}
    shapes = []
    for _, shape in graph.inputs.values():
        shapes.append({axis: dims.setdefault(size, torch.export.Dim(size, min=2))
                       for axis, size in enumerate(shape) if isinstance(size, str)})
    return tuple(shapes)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.export and onnxscript report every step and deprecation; the command prints its own lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_graph(graph: Graph, path: Path) -> None:
    """Write ``graph`` to ``path`` (atomically) as one self-contained ONNX file."""
    from onnxscript.function_libs.torch_lib.ops.core import aten_floor_divide

    with atomic_path(path) as tmp, _quiet_exporter():
        _forget_lstm_decomposition()
        torch.onnx.export(graph.module.eval(), tuple(x for x, _ in graph.inputs.values()), str(tmp), dynamo=True,
                          input_names=list(graph.inputs), output_names=list(graph.outputs), opset_version=OPSET,
                          dynamic_shapes=_dynamic_shapes(graph), external_data=False, verbose=False,
                          custom_translation_table={operator.floordiv: aten_floor_divide})
        _forget_lstm_decomposition()
        _check_dynamic_axes(graph, tmp)


def _forget_lstm_decomposition() -> None:
    """After one export, aten.lstm's dispatch cache holds its Python decomposition for AutogradCPU, so
    the next export in the process unrolls the LSTM over a fixed length (measured, torch 2.13):
    cleared before and after each export, every LSTM stays one ONNX LSTM node."""
    getattr(torch.ops.aten.lstm.input, "_dispatch_cache", {}).clear()


def _check_dynamic_axes(graph: Graph, path: Path) -> None:
    """torch.onnx falls back, silently, to a graph with fixed sizes when torch.export cannot keep an
    axis dynamic; such a file would fail on other lengths, so it is refused here."""
    import onnx

    for value in onnx.load(str(path), load_external_data=False).graph.input:
        dims = tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)
        if dims != graph.inputs[value.name][1]:
            raise RuntimeError(f"{graph.name}: input {value.name} exported with shape {list(dims)}, "
                               f"expected {list(graph.inputs[value.name][1])} (an axis lost its dynamic size)")


def _version(module: str) -> str:
    return getattr(optional_import(module, "onnx", "speechtok export onnx"), "__version__", "unknown")


def _weights_sha256(name_or_dir: str | Path) -> str:
    return json.loads((resolve(name_or_dir) / CONFIG_FILE).read_text())["weights"]["sha256"]


def check_export_dir(directory: str | Path, force: bool) -> Path:
    """Refuse a DIR that is a file, is not writable, or holds files (unless ``force``)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise DataError(f"{directory}: not empty; choose a new folder or pass --force to overwrite an earlier export")
    return check_output_dir(directory, what="ONNX export")


def load_for_export(name_or_dir: str | Path) -> SiTok | HoliTok:
    """The checkpoint's model, frozen on the CPU, refused if it cannot be exported."""
    kind = load_checkpoint_kind(name_or_dir)
    if kind is None:
        resolve(name_or_dir)  # raises the one-line "no such checkpoint" error
        raise CheckpointError(f"{name_or_dir}: {CONFIG_FILE} does not name a model kind")
    if kind not in (SiTok.model_kind, HoliTok.model_kind):
        raise DataError(f"{name_or_dir}: a {kind} checkpoint; ONNX export takes a SiTok or HoliTok tokenizer")
    model: SiTok | HoliTok = (SiTok if kind == SiTok.model_kind else HoliTok).from_pretrained(name_or_dir)
    if isinstance(model, SiTok) and model.config.quantizer != "vq":
        raise DataError(f"{name_or_dir}: ONNX export supports SiTok's VQ quantiser, not {model.config.quantizer!r}")
    for part in [model] + ([model.vocoder] if isinstance(model, SiTok) and model.vocoder is not None else []):
        size = sum(t.numel() * t.element_size() for t in [*part.parameters(), *part.buffers()])
        if size > MAX_GRAPH_BYTES:
            raise DataError(f"{name_or_dir}: {size / 2**30:.1f} GiB of weights in one graph; ONNX files hold at most 2 GiB")
    return model.float().eval().requires_grad_(False)


def manifest_for(model: SiTok | HoliTok, source: str, graphs: list[Graph], directory: Path) -> dict[str, Any]:
    files = {
        g.name: {"file": g.file, "sha256": sha256_file(directory / g.file), "description": g.description,
                 "inputs": [{"name": n, "dtype": _dtype_name(x), "shape": list(s)} for n, (x, s) in g.inputs.items()],
                 "outputs": [{"name": n, "dtype": d, "shape": list(s)} for n, (d, s) in g.outputs.items()]}
        for g in graphs}
    manifest: dict[str, Any] = {
        "format": FORMAT, "kind": model.model_kind, "opset": OPSET,
        "exporter": f"torch.onnx dynamo (torch {torch.__version__}, onnxscript {_version('onnxscript')})",
        "checkpoint": {"name": source, "weights_sha256": _weights_sha256(source), "config": model.config.name},
        "sample_rate": model.sample_rate,
        "dynamic_axes": "named sizes in the shapes (batch, samples, tokens, frames) vary per call; numbers are fixed",
        "graphs": files,
    }
    if isinstance(model, HoliTok):
        manifest.update(latent_rate=model.latent_rate, latents={"dim": model.latent_dim, "dtype": "float32"},
                        samples_per_latent=model.hop_length, decoder_head=model.config.decoder_head)
        if model.config.decoder_head == "mel":  # inside the decoder graph, recorded for provenance
            manifest["vocoder"] = {"source": model.vocoder_source, "weights_sha256": _weights_sha256(model.vocoder_source)}
        return manifest
    c = model.config
    manifest.update(
        token_rate=model.token_rate, samples_per_token=model.samples_per_token,
        codes={"codebooks": 1, "codebook_size": model.codebook_size, "dtype": "int64"},
        mel={"n_mels": c.mel.n_mels, "frames_per_token": c.stack, "hop_length": c.mel.hop_length},
        vocoder=None if model.vocoder is None else {"source": model.vocoder_source,
                                                    "weights_sha256": _weights_sha256(model.vocoder_source)},
        decoding={
            "steps": c.sample_steps, "cfg": c.cfg_scale, "temperature": c.sample_temperature,
            **({"cfg_range": [1.0, c.guidance_max]} if c.guidance_distill else {}),
            "noise": {"shape": ["batch", "tokens", c.mel.n_mels * c.stack], "distribution": "standard normal, float32",
                      "layout": f"stacked: row t holds mel frames {c.stack}t..{c.stack}t+{c.stack - 1}, "
                                f"{c.mel.n_mels} bins each, frame after frame",
                      "pytorch": f"torch.randn(batch, tokens, {c.mel.n_mels * c.stack}, "
                                 "generator=torch.Generator().manual_seed(seed)) (SiTok.decode's default seed is 0)"},
            "euler": "x = temperature · noise; for i in range(steps): x += decoder_step(x, t=i/steps, codes, cfg) / steps",
            "mel": f"x.reshape(batch, tokens·{c.stack}, {c.mel.n_mels}).transpose(0, 2, 1) → normalised log-mel for the vocoder",
        })
    return manifest


def export_onnx(name_or_dir: str, directory: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Export a SiTok or HoliTok checkpoint to ``directory``; returns the manifest (also written there)."""
    for module in ("onnx", "onnxscript"):
        optional_import(module, "onnx", "speechtok export onnx")
    directory = check_export_dir(directory, force)
    model = load_for_export(name_or_dir)
    graphs = sitok_graphs(model) if isinstance(model, SiTok) else holitok_graphs(model)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)  # --force: an export that fails half-way leaves no manifest
    for graph in graphs:
        export_graph(graph, directory / graph.file)
    manifest = manifest_for(model, str(name_or_dir), graphs, directory)
    write_json_atomic(directory / MANIFEST, manifest)  # last: a folder with a manifest is a finished export
    return manifest


def export_command(args: argparse.Namespace) -> int:
    manifest = export_onnx(args.checkpoint, args.output, force=args.force)
    out = Path(args.output)
    for name, graph in manifest["graphs"].items():
        size = (out / graph["file"]).stat().st_size / 2 ** 20
        print(f"{out / graph['file']}: {name}, {graph['description']} ({size:.1f} MiB)")
    if manifest["kind"] == SiTok.model_kind and manifest["vocoder"] is None:
        print(f"note: {args.checkpoint} has no neural vocoder; no vocoder graph was written")
    print(f"{out / MANIFEST}: opset {OPSET}, {manifest['kind']} from {args.checkpoint}")
    return 0
