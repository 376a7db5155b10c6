"""Turn template specs into float64 arrays of length d (this is the only place templates touch files)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mi_datagen.errors import SpecError
from mi_datagen.limits import limit
from mi_datagen.spec.templates_spec import (
    BUILTIN_TEMPLATES,
    BlobTemplate,
    FileTemplate,
    OneHotTemplate,
    OnesTemplate,
    RandomTemplate,
    TemplateSpec,
    UniformTemplate,
    WaveTemplate,
)


def _grid_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) view of a node shape: (d,) → (1, 1, d); (H, W) → (1, H, W)."""
    if len(shape) == 1:
        return (1, 1, shape[0])
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    return (shape[0], shape[1], shape[2])


def _onehot(t: OneHotTemplate, shape: tuple[int, ...], where: str) -> np.ndarray:
    d = math.prod(shape)
    out = np.zeros(d)
    if isinstance(t.index, int):
        flat = t.index
    else:
        if len(t.index) != len(shape) or any(i >= s for i, s in zip(t.index, shape)):
            raise SpecError(f"{where}.index: {t.index} does not fit the node shape {list(shape)}; "
                            f"give {len(shape)} indices each below its size, or a flat index < {d}")
        flat = int(np.ravel_multi_index(tuple(t.index), shape))
    if flat >= d:
        raise SpecError(f"{where}.index: flat index {flat} >= d = {d}; use an index below d")
    out[flat] = 1.0
    return out


def _blob(t: BlobTemplate, shape: tuple[int, ...], where: str) -> np.ndarray:
    c, h, w = _grid_shape(shape)
    channels = list(range(c)) if t.channels is None else t.channels
    bad = [ch for ch in channels if ch >= c]
    if bad:
        raise SpecError(f"{where}.channels: {bad} out of range for {c} channel(s); use channels below {c}")
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    g = np.exp(-((rows - t.center[0]) ** 2 + (cols - t.center[1]) ** 2) / (2.0 * t.sigma**2))
    out = np.zeros((c, h, w))
    out[channels] = t.amplitude * g
    return out.reshape(-1)


def _wave(t: WaveTemplate, shape: tuple[int, ...], where: str) -> np.ndarray:
    c, h, w = _grid_shape(shape)
    weights = [1.0] * c if t.channels is None else list(t.channels)
    if len(weights) != c:
        raise SpecError(f"{where}.channels: {len(weights)} weights for {c} channel(s); give one weight per channel")
    fh, fw = t.freq
    if fh > h // 2 or fw > w // 2:
        raise SpecError(f"{where}.freq: {list(t.freq)} is above the grid's Nyquist frequency ({h // 2}, {w // 2}); "
                        "use frequencies up to half the height and width")
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    g = np.cos(2.0 * np.pi * (fh * rows / h + fw * cols / w) + t.phase)
    if t.envelope is not None:
        h0, w0, sigma = t.envelope
        g = g * np.exp(-((rows - h0) ** 2 + (cols - w0) ** 2) / (2.0 * sigma ** 2))
    return (np.asarray(weights, dtype=np.float64)[:, None, None] * g[None]).reshape(-1)


def read_template_file(path: Path, shape: tuple[int, ...], where: str) -> np.ndarray:
    """The raw float64 array of a template file (.npy, or an image scaled to [0, 1]), flat, checked."""
    if not path.is_file():
        raise SpecError(f"{where}.path: template file {str(path)!r} not found")
    lim, size = limit("template_bytes"), path.stat().st_size
    if size > lim.value:
        raise SpecError(f"{where}.path: {str(path)!r} is {lim.refusal(size)}")
    arr = _read_npy(path, shape, where) if path.suffix.lower() == ".npy" else _read_image(path, shape, where)
    return _checked(arr, shape, where)


def _read_npy(path: Path, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A real-valued .npy array of d values; the header is checked before any data is read."""
    d = math.prod(shape)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            header = read(f, max_header_size=10_000)
        except (ValueError, OSError, SyntaxError) as err:
            raise SpecError(f"{where}.path: {str(path)!r} is not a .npy array file ({err}); save it with numpy.save") \
                from None
        arr_shape, _, dtype = header
        if dtype.hasobject or dtype.kind not in "biuf":
            raise SpecError(f"{where}.path: {str(path)!r} holds {dtype} values; a template needs real numbers "
                            "(int or float), not complex, strings or objects")
        if math.prod(arr_shape) != d:
            raise SpecError(f"{where}.path: template of shape {list(arr_shape)} does not match the node shape "
                            f"{list(shape)} (d = {d}); save it with that shape or flat")
    try:
        return np.load(path, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError, EOFError) as err:  # truncated data after a valid header
        raise SpecError(f"{where}.path: {str(path)!r} cannot be read ({err})") from None


def _read_image(path: Path, shape: tuple[int, ...], where: str) -> np.ndarray:
    """An 8-bit image scaled to [0, 1], channels first; other bit depths are refused (they would be rounded)."""
    from PIL import Image, UnidentifiedImageError

    c = _grid_shape(shape)[0]
    try:
        with Image.open(path) as im:
            if im.mode not in ("1", "L", "P", "RGB", "RGBA", "LA"):
                raise SpecError(f"{where}.path: {str(path)!r} is a {im.mode} image; templates read 8-bit images "
                                "exactly, save a higher bit depth as .npy instead")
            arr = np.asarray(im.convert("RGB" if c == 3 else "L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as err:
        raise SpecError(f"{where}.path: {str(path)!r} is not a readable image or .npy file ({err})") from None
    return np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr


def _checked(arr: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    d = math.prod(shape)
    if arr.size != d or (arr.ndim > 1 and tuple(arr.shape) != tuple(shape)):
        raise SpecError(f"{where}.path: template of shape {list(arr.shape)} does not match the node shape "
                        f"{list(shape)} (d = {d}); save it with that shape or flat")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{where}.path: template file holds NaN or infinite values; templates must be finite")
    return arr.reshape(-1)


def template_file_path(t: FileTemplate, base_dir: Path | str) -> Path:
    """Where a file template's path points (relative paths resolve against ``base_dir``)."""
    path = Path(t.path)
    return path if path.is_absolute() else Path(base_dir) / path


def file_templates(spec) -> list[tuple[str, FileTemplate]]:
    """The distinct file templates (by path) an explicit spec's edges use, inline or named, in edge order,
    each with where it is written in the spec."""
    named, out, seen = spec.templates or {}, [], set()
    for i, e in enumerate(spec.edges):
        if isinstance(e.template, str):
            where, t = f"templates.{e.template}", named.get(e.template)
        else:
            where, t = f"edges[{i}].template", e.template
        if isinstance(t, FileTemplate) and t.path not in seen:
            seen.add(t.path)
            out.append((where, t))
    return out


def _normalize(arr: np.ndarray, how: str, where: str) -> np.ndarray:
    if how == "none":
        return arr
    scale = {"l2": np.linalg.norm(arr), "rms": np.linalg.norm(arr) / math.sqrt(arr.size),
             "max": np.max(np.abs(arr))}[how]
    if scale == 0.0:
        raise SpecError(f"{where}.normalize: cannot normalize an all-zero template ({how}); use normalize: none")
    return arr / scale


def resolve_template(t: TemplateSpec | str, shape: tuple[int, ...], *, named: dict | None = None,
                     base_dir: Path | str = ".", files: Mapping[str, np.ndarray] | None = None,
                     where: str = "template") -> np.ndarray:
    """The template as a float64 vector of length d = prod(shape).

    A file template reads ``files[path]`` when given (the raw arrays a store keeps, by the path as
    written in the spec), else the file at ``path`` (relative to ``base_dir``)."""
    if isinstance(t, str):
        table = {**BUILTIN_TEMPLATES, **(named or {})}
        if t not in table:
            raise SpecError(f"{where}: unknown template {t!r}; known: {sorted(table)}")
        where, t = f"templates.{t}", table[t]
    d = math.prod(shape)
    if isinstance(t, OnesTemplate):
        arr = np.ones(d)
    elif isinstance(t, UniformTemplate):
        arr = np.full(d, 1.0 / math.sqrt(d))
    elif isinstance(t, OneHotTemplate):
        arr = _onehot(t, shape, where)
    elif isinstance(t, BlobTemplate):
        arr = _blob(t, shape, where)
    elif isinstance(t, RandomTemplate):
        rng = np.random.default_rng(t.seed)
        arr = rng.standard_normal(d) if t.distribution == "normal" else rng.random(d)
    elif isinstance(t, WaveTemplate):
        arr = _wave(t, shape, where)
    elif isinstance(t, FileTemplate):
        if files is not None and t.path in files:
            arr = _checked(np.asarray(files[t.path], dtype=np.float64), shape, where)
        else:
            arr = read_template_file(template_file_path(t, base_dir), shape, where)
    else:  # pragma: no cover - the discriminated union admits nothing else
        raise SpecError(f"{where}: unsupported template {t!r}")
    return _normalize(arr, t.normalize, where)
