"""Load a flow for use: shipped checkpoints (registry with pinned sha256) or any exported file.

A shipped/exported flow file holds the EMA weights, the model config, the class names, the data
description and the recommended (certified) solver settings. ``flows/registry.json`` pins the
sha256 of each shipped file, so a swapped file is refused even if its sidecar was swapped too.

A registry entry may also carry its own ``solver`` (and the ``grid_design`` it came from): the same pinned
weights applied on another grid, registered under another name, without a second copy of the weights. The
applied map is the pair (weights, solver); a store records both (its manifest's sha256 and solver).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mi_datagen.assets import DEFAULT_FLOW, checkpoints_dir, register, registry
from mi_datagen.errors import SpecError
from mi_datagen.flows.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from mi_datagen.flows.ode import SolverConfig, flow_map
from mi_datagen.flows.unet import UNet, UNetConfig

FORMAT = "mi-datagen-flow/1"


def flows_dir() -> Path:
    """The shipped flow checkpoints (see ``mi_datagen.assets.checkpoints_dir``)."""
    return checkpoints_dir()


@dataclass
class Flow:
    net: UNet
    classes: tuple[str, ...]
    solver: SolverConfig
    meta: dict
    sha256: str
    path: Path

    def label_index(self, label) -> int:
        if isinstance(label, int) and not isinstance(label, bool):
            if not 0 <= label < len(self.classes):
                raise SpecError(f"class index {label} is out of range for {self.path.name} "
                                f"({len(self.classes)} classes: 0..{len(self.classes) - 1})")
            return label
        if label not in self.classes:
            raise SpecError(f"class {label!r} is not in {self.path.name}; its classes: {list(self.classes)}")
        return self.classes.index(label)

    def map(self, z: torch.Tensor, label, solver: SolverConfig | None = None) -> torch.Tensor:
        return flow_map(self.net, z, self.label_index(label), solver or self.solver)

    @property
    def map_id(self) -> str:
        """What identifies the applied map: the weights' sha256, plus a digest of the solver when a registry entry
        applies them on a grid other than the file's own (``meta['file_solver']``)."""
        if "file_solver" not in self.meta:
            return self.sha256
        solver = hashlib.sha256(json.dumps(self.solver.to_dict(), sort_keys=True).encode()).hexdigest()
        return f"{self.sha256}+solver:{solver[:16]}"

    @property
    def shape(self) -> tuple[int, int, int]:
        c = self.net.cfg
        return (c.image_channels, c.image_size, c.image_size)


def load_flow(ref: str | Path = DEFAULT_FLOW, device: str = "cpu") -> Flow:
    """``ref``: a registry name (``default-v2``, ``default``) or a path to an exported flow file."""
    reg = registry()
    entry: dict = {}
    if isinstance(ref, str) and ref in reg:
        entry = reg[ref]
        path, expected = flows_dir() / entry["file"], entry["sha256"]
    else:
        path, expected = Path(ref), None
        if not path.is_file():
            raise CheckpointError(f"flow {str(ref)!r}: neither a shipped flow ({sorted(reg)}) nor a file")
    ck = load_checkpoint(path, expected_sha256=expected, map_location=device)
    if ck.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an exported flow (format {ck.get('format')!r}); run `mi-datagen export-flow`")
    missing = sorted({"model_config", "model", "classes", "solver"} - set(ck))
    if missing:
        raise CheckpointError(f"{path}: an exported flow needs {missing}; re-export it with `mi-datagen export-flow`")
    try:
        cfg, file_solver = UNetConfig.from_dict(ck["model_config"]), SolverConfig(**ck["solver"])
        solver = SolverConfig(**entry["solver"]) if "solver" in entry else file_solver
    except (TypeError, ValueError) as err:
        where = f"registry entry {ref!r}" if "solver" in entry else str(path)
        raise CheckpointError(f"{where}: invalid model_config or solver ({err})") from None
    net = UNet(cfg).to(device)
    try:
        net.load_state_dict(ck["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the model_config ({str(err).splitlines()[0]})") from None
    # NHWC inference: 1.3-1.5x faster on CPU; the layout is part of the applied map (see unet.is_channels_last)
    net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    meta = {k: ck[k] for k in ("data", "step", "wall_s", "train_config", "losses", "grid_design") if k in ck}
    if solver != file_solver:  # a registered grid for these weights
        meta.pop("grid_design", None)
        meta["file_solver"] = ck["solver"]
        meta.update({k: entry[k] for k in ("grid_design", "calibration") if k in entry})
    return Flow(net, tuple(ck["classes"]), solver, meta, sha256_file(path), path)


def save_flow(net: UNet, classes, solver: SolverConfig, out: str | Path, **meta) -> str:
    """Write a flow file (weights, config, classes, solver, any training metadata); returns its sha256."""
    return save_checkpoint({"format": FORMAT, "model_config": net.cfg.to_dict(), "model": net.state_dict(),
                            "classes": list(classes), "solver": solver.to_dict(), **meta}, out)


def export_flow(train_checkpoint: str | Path, out: str | Path, solver: SolverConfig,
                name: str | None = None) -> str:
    """Write the EMA weights of a training checkpoint as a flow file; optionally register it by name."""
    ck = load_checkpoint(train_checkpoint)
    data = json.loads(ck["data"])
    out = Path(out)
    net = UNet(UNetConfig.from_dict(ck["model_config"]))
    net.load_state_dict(ck["ema"])
    digest = save_flow(net, data["classes"], solver, out, data=ck["data"], step=ck["step"], wall_s=ck["wall_s"],
                       train_config=ck["train_config"], losses=ck["losses"])
    if name is not None:
        register(out.parent, name, {"file": out.name, "sha256": digest, "step": ck["step"]})
    return digest
