"""VQGAN training (Esser, Rombach & Ommer 2021) on the engine, with a CLIP as the perceptual network.

Per batch of pictures x in [0, 1] and reconstructions x̂ = D(q(E(x))), taming-transformers'
``VQLPIPSWithDiscriminator``:

    L = |x - x̂|_1 + w_p P(x, x̂)                    (the reconstruction term, "nll")
      + L_vq = ||sg[z] - e||² + β ||z - sg[e]||²   (codebook + commitment)
      + f w_d λ (-mean D(x̂))                       (generator term)
      + f ½ (mean relu(1 - D(x)) + mean relu(1 + D(sg[x̂])))   (discriminator hinge loss)

with f = 0 before ``disc_start`` steps and 1 after, w_d = ``disc_weight``, and λ taming's adaptive weight
``||∇_G nll|| / (||∇_G gan|| + 1e-4)`` (clamped to [0, 1e4]) at the decoder's last layer G.

The perceptual term P replaces LPIPS's VGG (no VGG weights can be had offline) with the frozen CLIP's image
tower: for each chosen block, token features unit-normalised over channels, squared difference summed over
channels, averaged over tokens (LPIPS with equal channel weights), summed over blocks.

One optimiser steps both networks (the engine has one): the generator term calls the discriminator with detached
parameters (``torch.func.functional_call``), and the discriminator loss sees ``sg[x̂]``, so each network gets
exactly the gradient of its own loss, as taming's two optimisers do. The export is the VQGAN (no discriminator)
as a ``generator/vqgan`` head file naming the CLIP of its perceptual term.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..data.sample import Sample
from ..errors import ConfigError
from ..heads import vqgan as _vqgan_head  # noqa: F401  (registers the generator/vqgan head kind)
from ..models import dense_forward, tower_facts
from ..models.vqgan import VQGAN, PatchDiscriminator, VQGANConfig
from .base import DataInfo, HeadExport, Objective, SampleTransform
from .views import ImageView, model_image_stats


@dataclass
class VQGANOptions:
    """Options of the vqgan objective (``--objective-arg KEY=VALUE``).

    Args:
        size: side of the training crops in pixels (a multiple of the downsampling factor).
        channels / channel_mult / res_blocks / codebook_size / code_dim / beta: the VQGAN (``models.vqgan``).
        crop_scale: random-resized-crop area range; flip: random horizontal flips.
        perceptual_weight: w_p; perceptual_blocks: the CLIP image-tower blocks of P (negative from the end).
        disc_start: optimiser steps before the discriminator and its generator term switch on.
        disc_weight: w_d, the generator term's weight; adaptive: taming's adaptive λ (else λ = 1).
        disc_channels / disc_layers: the PatchGAN's width and depth.
        restart_every: every this many steps, codes whose use (an EMA of their batch counts, decay 0.99) fell
            below ``restart_below`` are moved onto random latents of the current batch (0 = never); the codebook
            also starts from the first batch's latents. Neither is in taming; both keep a small codebook in use.
        seed: initialisation seed of both networks.
    """

    size: int = 64
    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 1
    codebook_size: int = 256
    code_dim: int = 32
    beta: float = 0.25
    crop_scale: tuple[float, float] = (0.8, 1.0)
    flip: bool = True
    perceptual_weight: float = 1.0
    perceptual_blocks: tuple[int, ...] = (0, 1)
    disc_start: int = 500
    disc_weight: float = 0.8
    adaptive: bool = True
    disc_channels: int = 32
    disc_layers: int = 3
    restart_every: int = 50
    restart_below: float = 0.03
    seed: int = 0

    def __post_init__(self) -> None:
        """``--objective-arg channel_mult=1,2,4`` arrives as strings: make the sequences numbers (or say which)."""
        for name, kind in (("channel_mult", int), ("perceptual_blocks", int), ("crop_scale", float)):
            value = getattr(self, name)
            value = value if isinstance(value, (list, tuple)) else [value]     # "perceptual_blocks=0": one number
            try:
                setattr(self, name, tuple(kind(v) for v in value))
            except (TypeError, ValueError):
                raise ConfigError(f"--objective-arg {name}={getattr(self, name)}: expected comma-separated "
                                  f"{kind.__name__}s") from None
        if len(self.crop_scale) != 2:
            raise ConfigError(f"--objective-arg crop_scale: expected two numbers (low,high), got {self.crop_scale}")


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Taming's discriminator hinge loss: ½ (mean relu(1 - real) + mean relu(1 + fake))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(nll: torch.Tensor, gan: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Taming's λ = ||∇_last nll|| / (||∇_last gan|| + 1e-4), clamped to [0, 1e4], without gradient."""
    nll_grad = torch.autograd.grad(nll, last, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, last, retain_graph=True)[0]
    return (nll_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class ClipPerceptual(nn.Module):
    """P(x, y): LPIPS's form on a frozen CLIP's block tokens (unit over channels, equal channel weights)."""

    def __init__(self, clip: nn.Module, blocks: Sequence[int]) -> None:
        super().__init__()
        size, mean, std = model_image_stats(clip)
        self.clip, self.blocks, self.size = clip, tuple(blocks), size
        self.register_buffer("mean", torch.tensor(mean)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(std)[None, :, None, None], persistent=False)

    def features(self, pictures: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if pictures.shape[-1] != self.size or pictures.shape[-2] != self.size:
            pictures = F.interpolate(pictures, size=(self.size, self.size), mode="bilinear", align_corners=False)
        maps = dense_forward(self.clip, (pictures - self.mean) / self.std, "vanilla", self.blocks).layers
        return tuple(F.normalize(m.float(), dim=1) for m in maps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(x)
        return sum(((a - b) ** 2).sum(1).mean() for a, b in zip(self.features(y), target))


class PictureTransform:
    """One sample -> ``{"image": (3, size, size)}`` in [0, 1]: a random resized crop, maybe flipped."""

    def __init__(self, options: VQGANOptions) -> None:
        self.view = ImageView(options.size, scale=tuple(options.crop_scale), ratio=(1.0, 1.0), flip=options.flip,
                              mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def __call__(self, sample: Sample, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"image": self.view(sample.image, generator)}


def vqgan_config(options: VQGANOptions) -> VQGANConfig:
    return VQGANConfig(options.channels, tuple(options.channel_mult), options.res_blocks, options.codebook_size,
                       options.code_dim, options.beta)


class VQGANObjective(Objective):
    """A VQGAN and its PatchGAN trained on pictures; the CLIP is frozen and only scores reconstructions.

    Batch: ``{"image": (B, 3, size, size)}`` in [0, 1].
    """

    name: ClassVar[str] = "vqgan"
    needs: ClassVar[frozenset[str]] = frozenset({"image"})
    Options: ClassVar[type] = VQGANOptions
    ddp_find_unused_parameters = True     # the discriminator gets no gradient before disc_start

    def __init__(self, bundle: Any, options: VQGANOptions | None = None, info: DataInfo | None = None,
                 total_steps: int = 1) -> None:
        super().__init__()
        self.options = options or VQGANOptions()
        opts = self.options
        config = vqgan_config(opts)
        if opts.size % config.downsample:
            raise ConfigError(f"--objective-arg size={opts.size}: expected a multiple of the downsampling factor "
                              f"{config.downsample}")
        depth = tower_facts(bundle.model).num_blocks
        if not opts.perceptual_blocks or not all(-depth <= b < depth for b in opts.perceptual_blocks):
            raise ConfigError(f"--objective-arg perceptual_blocks={list(opts.perceptual_blocks)}: this {depth}-block "
                              f"image tower has blocks 0..{depth - 1}")
        if opts.disc_start < 0 or opts.disc_weight < 0 or opts.perceptual_weight < 0:
            raise ConfigError("vqgan: disc_start, disc_weight and perceptual_weight must be >= 0")
        self.bundle = bundle
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            self.vqgan = VQGAN(config)
            self.discriminator = PatchDiscriminator(opts.disc_channels, opts.disc_layers)
        self.clip = bundle.model
        self.clip.requires_grad_(False)
        self.perceptual = ClipPerceptual(self.clip, opts.perceptual_blocks)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("code_use", torch.zeros(config.codebook_size))
        self.register_buffer("codebook_ready", torch.zeros((), dtype=torch.bool))
        self.latent_sample = torch.zeros(0, config.code_dim)    # the last step's latents (not saved)

    def frozen_modules(self) -> Sequence[nn.Module]:
        return (self.clip,)

    def exported_model(self) -> nn.Module:
        return self.vqgan

    def exported_head(self) -> HeadExport:
        return HeadExport(self.vqgan, self.bundle)

    def sample_transform(self) -> SampleTransform:
        return PictureTransform(self.options)

    def after_step(self, step: int) -> None:
        self.steps_done.fill_(step)

    def train(self, mode: bool = True) -> "VQGANObjective":
        super().train(mode)
        self.clip.eval()          # frozen: no dropout
        return self

    @torch.no_grad()
    def _tend_codebook(self, x: torch.Tensor) -> None:
        """Before a step: on the first, codes := random latents of the batch; every ``restart_every`` steps, idle
        codes := random latents kept from the previous step (done before the graph is built: no in-place edit of
        a tensor the backward needs)."""
        weight = self.vqgan.quantizer.embedding.weight
        generator = torch.Generator().manual_seed(self.options.seed + int(self.steps_done))
        if not bool(self.codebook_ready):
            z = self.vqgan.encode(x)
            flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            weight.copy_(flat[torch.randint(0, flat.shape[0], (weight.shape[0],), generator=generator)])
            self.codebook_ready.fill_(True)
            return
        done, every = int(self.steps_done), self.options.restart_every
        if every and done and done % every == 0 and self.latent_sample.shape[0]:
            dead = (self.code_use < self.options.restart_below).nonzero().flatten()
            if dead.numel():
                pool = self.latent_sample
                weight[dead] = pool[torch.randint(0, pool.shape[0], (dead.numel(),), generator=generator)]
                self.code_use[dead] = 1.0

    @torch.no_grad()
    def _note_codes(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Code use (EMA of batch frequency x codebook size: 1 = uniform) and latents to restart idle codes from."""
        size = self.code_use.shape[0]
        counts = torch.bincount(codes.reshape(-1), minlength=size).float()
        self.code_use.mul_(0.99).add_(0.01 * counts / counts.sum() * size)
        self.latent_sample = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        if self.training:
            self._tend_codebook(x)
        z = self.vqgan.encode(x)
        quantised = self.vqgan.quantizer(z)
        recon = self.vqgan.decode(quantised.z_q)
        if self.training:
            self._note_codes(z, quantised.codes)
        l1 = (x - recon).abs().mean()
        perceptual = self.perceptual(x, recon) if self.options.perceptual_weight > 0 else l1.new_zeros(())
        nll = l1 + self.options.perceptual_weight * perceptual
        out = {"l1": l1.detach(), "perceptual": perceptual.detach(), "codebook": quantised.loss.detach()}
        loss = nll + quantised.loss
        if int(self.steps_done) >= self.options.disc_start and self.options.disc_weight > 0:
            frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
            gan = -functional_call(self.discriminator, frozen, (recon,)).mean()
            lam = (adaptive_weight(nll, gan, self.vqgan.decoder.conv_out.weight)
                   if self.options.adaptive and torch.is_grad_enabled() else gan.new_ones(()))
            disc = hinge_d_loss(self.discriminator(x), self.discriminator(recon.detach()))
            loss = loss + self.options.disc_weight * lam * gan + disc
            out.update({"gan": gan.detach(), "disc": disc.detach(), "adaptive_weight": lam})
        return {"loss": loss, **out}


__all__ = ["ClipPerceptual", "VQGANObjective", "VQGANOptions", "adaptive_weight", "hinge_d_loss"]
