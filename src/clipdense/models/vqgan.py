"""A small VQGAN (Esser, Rombach & Ommer 2021, "Taming Transformers"), built as data from a config.

The design is taming-transformers' at small scale: a conv encoder (residual blocks with GroupNorm and swish, a
stride-2 conv per downsampling level, a middle block), a 1x1 ``quant_conv`` to the codebook dimension, a codebook
quantiser (nearest code by L2; loss ``||sg[z] - e||^2 + beta ||z - sg[e]||^2``; straight-through gradient
``z + sg[e - z]``), a 1x1 ``post_quant_conv`` and a mirrored decoder (nearest-neighbour upsampling + conv). The
PatchGAN discriminator (pix2pix's ``NLayerDiscriminator``: 4x4 convs, LeakyReLU 0.2) is here too; it is only a
training part and is not saved with the model. Pictures go in and out in [0, 1] (taming works in [-1, 1]: the
map is done inside).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class VQGANConfig:
    """The VQGAN's architecture.

    Args:
        channels: base width; level i has ``channels * channel_mult[i]`` channels.
        channel_mult: one entry per level; ``len - 1`` stride-2 downsamplings (factor ``2 ** (len - 1)``).
        res_blocks: residual blocks per level.
        codebook_size: number of codes.
        code_dim: dimension of each code (the quantised latent's channels).
        beta: commitment weight of the quantiser loss (taming: 0.25).
    """

    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    res_blocks: int = 1
    codebook_size: int = 256
    code_dim: int = 32
    beta: float = 0.25

    def __post_init__(self) -> None:
        if self.channels < 8 or self.channels % 8:
            raise ConfigError(f"vqgan channels: expected a multiple of 8 (GroupNorm groups), got {self.channels}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError(f"vqgan channel_mult: expected positive factors, got {self.channel_mult}")
        if self.res_blocks < 1 or self.codebook_size < 2 or self.code_dim < 1 or self.beta < 0:
            raise ConfigError("vqgan config: res_blocks >= 1, codebook_size >= 2, code_dim >= 1, beta >= 0 expected")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "channel_mult": list(self.channel_mult)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VQGANConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"vqgan config: unknown keys {sorted(unknown)}")
        values = dict(data)
        if "channel_mult" in values:
            values["channel_mult"] = tuple(int(v) for v in values["channel_mult"])
        return cls(**values)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm-swish-conv twice, with a 1x1 shortcut when the width changes (taming's ``ResnetBlock``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        cin = widths[0]
        for level, width in enumerate(widths):
            for _ in range(cfg.res_blocks):
                layers.append(ResBlock(cin, width))
                cin = width
            if level < len(widths) - 1:
                layers.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock(cin, cin)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, cfg.code_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult][::-1]
        self.conv_in = nn.Conv2d(cfg.code_dim, widths[0], 3, padding=1)
        self.mid = ResBlock(widths[0], widths[0])
        layers: list[nn.Module] = []
        cin = widths[0]
        for level, width in enumerate(widths):
            for _ in range(cfg.res_blocks):
                layers.append(ResBlock(cin, width))
                cin = width
            if level < len(widths) - 1:
                layers.append(Upsample(cin))
        self.up = nn.Sequential(*layers)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class Quantised:
    """The quantiser's output: straight-through latent, codebook loss, code indices (B, h, w)."""

    z_q: torch.Tensor
    loss: torch.Tensor
    codes: torch.Tensor


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with taming's codebook + commitment loss and the straight-through estimator."""

    def __init__(self, size: int, dim: int, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / size, 1.0 / size)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(B, h, w) index of the nearest code (L2) of each latent vector of z (B, D, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codes = self.embedding.weight
        distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.T + codes.pow(2).sum(1)[None])
        return distance.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) code vectors of indices (B, h, w)."""
        return self.embedding(codes).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> Quantised:
        codes = self.nearest(z.detach())
        e = self.lookup(codes)
        loss = F.mse_loss(e, z.detach()) + self.beta * F.mse_loss(z, e.detach())
        return Quantised(z + (e - z).detach(), loss, codes)


class VQGAN(nn.Module):
    """Encoder, codebook and decoder; ``forward`` returns the reconstruction (in [0, 1] up to the decoder's
    range) and the quantiser's output."""

    def __init__(self, config: VQGANConfig | None = None) -> None:
        super().__init__()
        self.config = config or VQGANConfig()
        self.encoder, self.decoder = Encoder(self.config), Decoder(self.config)
        self.quant_conv = nn.Conv2d(self.config.code_dim, self.config.code_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.config.code_dim, self.config.code_dim, 1)
        self.quantizer = VectorQuantizer(self.config.codebook_size, self.config.code_dim, self.config.beta)

    def encode(self, pictures: torch.Tensor) -> torch.Tensor:
        """z before quantisation (B, D, H/f, W/f) of pictures (B, 3, H, W) in [0, 1]."""
        factor = self.config.downsample
        if pictures.shape[-1] % factor or pictures.shape[-2] % factor:
            raise ConfigError(f"vqgan: picture sides must be multiples of {factor}, got {tuple(pictures.shape[-2:])}")
        return self.quant_conv(self.encoder(pictures * 2.0 - 1.0))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Pictures (B, 3, H, W), about [0, 1] (not clamped: losses see the raw output), of quantised latents."""
        return (self.decoder(self.post_quant_conv(z_q)) + 1.0) / 2.0

    def forward(self, pictures: torch.Tensor) -> tuple[torch.Tensor, Quantised]:
        quantised = self.quantizer(self.encode(pictures))
        return self.decode(quantised.z_q), quantised

    @torch.no_grad()
    def codebook_use(self, codes: torch.Tensor) -> dict[str, float]:
        """Perplexity (exp of the entropy of code frequencies) and the number of distinct codes in ``codes``."""
        counts = torch.bincount(codes.reshape(-1), minlength=self.config.codebook_size).double()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"perplexity": float(entropy.exp()), "codes_used": int((counts > 0).sum()),
                "codebook_size": self.config.codebook_size}


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN (``NLayerDiscriminator``): one logit per overlapping patch. Taming puts BatchNorm in
    it; here GroupNorm, so the objective can call it with detached parameters without touching running stats."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        parts: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, layers + 1):
            out = channels * min(2 ** n, 8)
            stride = 2 if n < layers else 1
            parts += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), _norm(out), nn.LeakyReLU(0.2)]
            width = out
        parts.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*parts)
        for module in self.modules():            # pix2pix's init: N(0, 0.02) convs
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, pictures: torch.Tensor) -> torch.Tensor:
        return self.net(pictures * 2.0 - 1.0)


__all__ = ["PatchDiscriminator", "Quantised", "VQGAN", "VQGANConfig", "VectorQuantizer"]
