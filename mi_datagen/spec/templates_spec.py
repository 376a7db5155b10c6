"""Template specs: how a scalar cause spreads over the d components of a vector node.

Only the *declarations* live here (pydantic); turning them into arrays is
``mi_datagen.spec.templates.resolve_template`` (it may read files).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Normalize = Literal["none", "l2", "rms", "max"]
"""Optional rescaling applied after a template is built:
``l2``: unit Euclidean norm; ``rms``: ‖T‖² = d (the norm of ``ones``); ``max``: max |T_c| = 1."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OnesTemplate(_Frozen):
    """1_d: the cause spreads homogeneously over every component (the paper's basic case)."""

    kind: Literal["ones"]
    normalize: Normalize = "none"


class UniformTemplate(_Frozen):
    """The constant vector with unit L2 norm, 1_d/√d (homogeneous, but its strength does not grow with d)."""

    kind: Literal["uniform"]
    normalize: Normalize = "none"


class OneHotTemplate(_Frozen):
    """All of the cause in one component: ``index`` is a flat index or a (c, h, w) tuple."""

    kind: Literal["onehot"]
    index: Union[NonNegativeInt, list[NonNegativeInt]]
    normalize: Normalize = "none"


class BlobTemplate(_Frozen):
    """A Gaussian blob on the (C, H, W) grid: exp(-((h-h0)² + (w-w0)²) / (2 σ²)) on the chosen channels."""

    kind: Literal["blob"]
    center: tuple[FiniteFloat, FiniteFloat]
    sigma: PositiveFloat
    channels: list[NonNegativeInt] | None = None
    amplitude: FiniteFloat = 1.0
    normalize: Normalize = "none"


class RandomTemplate(_Frozen):
    """I.i.d. entries drawn from an explicit seed (normal: N(0, 1); uniform: U(0, 1))."""

    kind: Literal["random"]
    seed: NonNegativeInt
    distribution: Literal["normal", "uniform"] = "normal"
    normalize: Normalize = "none"


class WaveTemplate(_Frozen):
    """A 2-D grating on the (H, W) grid, cos(2π(f_h·h/H + f_w·w/W) + phase), on the chosen channels
    (weights per channel, default 1 on each). Distinct frequencies are orthogonal; a grating away from the
    lowest frequencies puts none of a cause in brightness or coarse layout (the shortcut check's statistics)."""

    kind: Literal["wave"]
    freq: tuple[NonNegativeInt, NonNegativeInt]
    phase: FiniteFloat = 0.0
    channels: list[FiniteFloat] | None = None
    envelope: tuple[FiniteFloat, FiniteFloat, PositiveFloat] | None = Field(
        None, description="(h0, w0, σ): multiply by a Gaussian window at (h0, w0) — a localised Gabor patch")
    normalize: Normalize = "none"


class FileTemplate(_Frozen):
    """A template read from a .npy file (shape = node shape, or flat d) or an image file (.png/.jpg,
    scaled to [0, 1], channels-first). Relative paths are relative to the spec file."""

    kind: Literal["file"]
    path: str = Field(min_length=1)
    normalize: Normalize = "none"


TemplateSpec = Annotated[
    Union[OnesTemplate, UniformTemplate, OneHotTemplate, BlobTemplate, RandomTemplate, WaveTemplate, FileTemplate],
    Field(discriminator="kind"),
]

BUILTIN_TEMPLATES = {"ones": OnesTemplate(kind="ones"), "uniform": UniformTemplate(kind="uniform")}
"""Names usable in an edge's ``template`` without declaring them under ``templates:``."""
