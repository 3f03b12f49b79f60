"""SiTok's decoder precomputes per decode what does not depend on x_t (adaptive-norm gains of the
time grid, rotary tables, one input/skip projection for both guidance halves); the mel it produces
must match the plain per-step formulation to float rounding."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechtok.audio import load_audio
from speechtok.models.sitok import SiTok
from speechtok.modules.flow_matching import euler_integrate, guided

from sitok_finetune import as_trained

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-4  # max |Δ| on the normalised mel (values of order 1); measured about 1e-6


def plain_decode_mel(model: SiTok, codes: torch.Tensor, steps: int, cfg: float,
                     mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """The sampler as first written: the public ``velocity`` at every step, on a doubled batch for
    two-pass guidance."""
    b, _, tokens = codes.shape
    cond = model.cond_from_codes(codes.clamp(min=0))
    noise = torch.randn(b, tokens, model.decoder_in.in_features, generator=torch.Generator().manual_seed(0)) * temperature
    if cfg == 1.0:
        def velocity(x, t):
            return model.velocity(x, t, cond, mask)
    elif model.one_pass_guidance(cfg):  # a guidance-distilled decoder: the scale is an input
        def velocity(x, t):
            return model.velocity(x, t, cond, mask, guidance=torch.full_like(t, cfg))
    else:
        cond2, mask2 = torch.cat([cond, torch.zeros_like(cond)]), None if mask is None else torch.cat([mask, mask])

        def velocity(x, t):
            return guided(*model.velocity(torch.cat([x, x]), torch.cat([t, t]), cond2, mask2).chunk(2), cfg)
    return model.unstack(euler_integrate(velocity, noise, steps))


@pytest.fixture(scope="module", params=["sitok-default", "tiny-guidance-adapter"])
def model_and_codes(request) -> tuple[SiTok, torch.Tensor]:
    """The bundled weights (two-pass guidance), and a guidance-distilled decoder for the one-pass path:
    no bundled checkpoint carries an adapter since 2026-12-04, so a small one with random weights."""
    if request.param == "sitok-default":
        model = SiTok.from_pretrained("sitok-default").eval()
    else:
        torch.manual_seed(0)
        model = as_trained(SiTok.from_preset("sitok-tiny", guidance_distill=True, guidance_max=3.0)).eval()
        with torch.no_grad():  # a trained adapter: zero-initialised, it would add nothing
            for p in (*model.guidance_embed.parameters(), *model.guidance_cond.parameters()):
                p.normal_(std=0.1)
    wavs = [torch.from_numpy(load_audio(DATA / name, model.sample_rate)[0])
            for name in ("allison-activated.flac", "allison-added.flac")]
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)[:, None]
    return model, model.encode(batch, model.sample_rate, torch.tensor([len(w) for w in wavs]))


@pytest.mark.parametrize("steps,cfg", [(16, 2.0), (4, 1.0), (3, 3.5), (2, None)])
def test_precomputed_sampler_matches_plain_one(model_and_codes, steps, cfg):
    model, codes = model_and_codes
    assert int((codes == SiTok.PAD_CODE).sum()) > 0  # a padded batch
    assert model.one_pass_guidance(2.0) == model.config.guidance_distill and not model.one_pass_guidance(3.5)
    mask = codes[:, 0] != SiTok.PAD_CODE
    with torch.inference_mode():  # cfg None: the checkpoint's defaults (its noise temperature too); else full noise
        fast = model.decode_mel(codes, steps=steps, cfg=cfg, temperature=None if cfg is None else 1.0)
        plain = plain_decode_mel(model, codes, steps, model.config.cfg_scale if cfg is None else cfg, mask,
                                 model.config.sample_temperature if cfg is None else 1.0)
    assert (fast - plain).abs().max() < TOLERANCE


def test_norm_gains_need_an_adaptive_stack():
    from speechtok.modules.transformer import Transformer, TransformerConfig

    with pytest.raises(ValueError, match="cond_dim"):
        Transformer(TransformerConfig(32, 1, 2, 64)).norm_gains(torch.zeros(1, 32))
