"""A small class-conditional UNet velocity field v(x, t, c) for flow matching.

Everything is per sample: GroupNorm (never BatchNorm), no batch statistics, so a sample's
velocity does not depend on the other samples in its batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mi_datagen.errors import ConfigError
from mi_datagen.limits import limit


@dataclass(frozen=True)
class UNetConfig:
    image_channels: int = 3
    image_size: int = 32
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = ()
    num_classes: int = 10
    emb_dim: int = 128
    dropout: float = 0.0
    groups: int = 8
    # space-to-depth stem: the net works on (C·p², H/p, W/p) and pixel-shuffles back; p = 1 is v1
    patch_size: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """A config from a checkpoint: unknown keys and sizes past the parameter limit are refused first."""
        if not isinstance(d, dict):
            raise ConfigError(f"model_config must be a mapping, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"model_config: unknown keys {unknown}; valid keys: {sorted(known)}")
        d = dict(d)
        for k in ("channel_mults", "attention_levels"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        lim, n = limit("model_params"), cfg.parameter_bound()
        if n > lim.value:
            raise ConfigError(f"model_config asks for about {n:.3g} parameters: {lim.refusal(f'{n:.3g}')}")
        return cfg

    def parameter_bound(self) -> float:
        """An upper bound on the parameter count, computed without building anything."""
        chans = [self.base_channels * m for m in self.channel_mults] or [self.base_channels]
        blocks = 3 * self.num_res_blocks + 4  # down, up (one more per level), attention, resampling
        per_level = sum(blocks * 2 * 9 * (2 * c) ** 2 for c in chans)
        return float(per_level + self.emb_dim * (self.emb_dim + self.num_classes) * 4
                     + 9 * self.image_channels * self.patch_size ** 2 * max(chans) * 2)


PRESETS: dict[str, UNetConfig] = {
    # trains and samples on a 2-core CPU (bf16 autocast on AMX)
    "cpu-small": UNetConfig(base_channels=24, channel_mults=(1, 2, 3), num_res_blocks=1),
    # v2: a 2×2 space-to-depth stem, so the net runs at 16² / 8² / 4² with 48 / 96 / 144 channels —
    # the FLOPs of cpu-small (0.34 GFLOP per evaluation) at 3.6× its parameters, 1.3× faster to
    # train and 1.4× faster to evaluate on CPU (benchmarks/RESULTS.md, "Flows v2")
    "cpu-v2": UNetConfig(patch_size=2, base_channels=48, channel_mults=(1, 2, 3), num_res_blocks=1, groups=16),
    "cpu-medium": UNetConfig(base_channels=48, channel_mults=(1, 2, 2), num_res_blocks=2, attention_levels=(2,)),
    # for a GPU
    "gpu-large": UNetConfig(base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_levels=(1, 2),
                            emb_dim=512, dropout=0.1, groups=32),
    # for tests
    "tiny": UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, emb_dim=16, groups=4),
}


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * 100.0 * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int, dropout: float):
        super().__init__()
        self.n1 = nn.GroupNorm(min(groups, cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.n2 = nn.GroupNorm(min(groups, cout), cout)
        self.drop = nn.Dropout(dropout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(cast(torch.Tensor, self.c2.bias))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.emb(e)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        h = self.c2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, groups: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        E, g = cfg.emb_dim, cfg.groups
        self.t_mlp = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E))
        self.c_emb = nn.Embedding(cfg.num_classes, E)
        chs = [cfg.base_channels * m for m in cfg.channel_mults]
        if cfg.image_size % cfg.patch_size:
            raise ConfigError(f"patch_size {cfg.patch_size} does not divide image_size {cfg.image_size}")
        cin = cfg.image_channels * cfg.patch_size ** 2
        self.inp = nn.Conv2d(cin, chs[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [chs[0]], chs[0]
        for lvl, c in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                blocks: list[nn.Module] = [ResBlock(ch, c, E, g, cfg.dropout)]
                ch = c
                if lvl in cfg.attention_levels:
                    blocks.append(Attention(ch, g))
                self.down.append(nn.ModuleList(blocks))
                skips.append(ch)
            if lvl < len(chs) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, E, g, cfg.dropout), Attention(ch, g), ResBlock(ch, ch, E, g, cfg.dropout)])
        self.up = nn.ModuleList()
        for lvl, c in reversed(list(enumerate(chs))):
            for _ in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(ch + skips.pop(), c, E, g, cfg.dropout)]
                ch = c
                if lvl in cfg.attention_levels:
                    blocks.append(Attention(ch, g))
                self.up.append(nn.ModuleList(blocks))
            if lvl > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]))
        self.out = nn.Sequential(nn.GroupNorm(min(g, ch), ch), nn.SiLU(), nn.Conv2d(ch, cin, 3, padding=1))
        last = cast(nn.Conv2d, self.out[-1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(cast(torch.Tensor, last.bias))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        e = self.t_mlp(timestep_embedding(t, self.cfg.emb_dim).to(self.inp.weight.dtype)) + self.c_emb(c)
        p = self.cfg.patch_size
        if p > 1:
            x = F.pixel_unshuffle(x, p)
        if is_channels_last(self):
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.inp(x)
        hs = [h]
        for blocks in cast(list[nn.ModuleList], self.down):
            for b in blocks:
                h = b(h, e) if isinstance(b, ResBlock) else b(h)
            hs.append(h)
        for b in self.mid:
            h = b(h, e) if isinstance(b, ResBlock) else b(h)
        for blocks in cast(list[nn.ModuleList], self.up):
            if isinstance(blocks[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            for b in blocks:
                h = b(h, e) if isinstance(b, ResBlock) else b(h)
        h = self.out(h)
        if p > 1:
            h = F.pixel_shuffle(h, p)
        return h.contiguous()


def is_channels_last(net: UNet) -> bool:
    """Whether the net's conv weights are stored channels-last (NHWC). Inference in that layout is
    1.3–1.5× faster on CPU here (oneDNN); the arithmetic differs from NCHW by float rounding (~3e-6),
    so the layout is part of the applied map and fixed by ``load_flow``."""
    w = net.inp.weight
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
