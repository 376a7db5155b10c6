"""One modality of a generation job: its standardisation, flow and certified applied map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mi_datagen.errors import CertificationError, ConfigError, SpecError
from mi_datagen.flows.certify import invert
from mi_datagen.flows.io import Flow, load_flow, registry
from mi_datagen.flows.ode import Tiled, flow_map
from mi_datagen.model.standardize import BlockStandardizer, block_standardizer
from mi_datagen.spec.models import GraphSpec
from mi_datagen.store.manifest import CertificateRecord, RoundTripRecord


@dataclass(frozen=True)
class FlowMap:
    """A modality's flow: the file (``ref`` as the spec names it), the class it maps to and the tiled net."""

    flow: Flow
    ref: str
    label: str | int
    net: Tiled

    @property
    def index(self) -> int:
        return self.flow.label_index(self.label)

    @property
    def solver(self):
        return self.flow.solver


@dataclass
class Modality:
    name: str
    standardizer: BlockStandardizer | None
    map: FlowMap | None  # None: the identity (the latent block is stored as it is)

    def inputs(self, z: np.ndarray) -> np.ndarray:
        """The flow input w (float64, (n, d)): standardised or not."""
        return self.standardizer.standardize(z) if self.standardizer is not None else z

    def apply(self, w: np.ndarray, cfg, device: str, shape, keep: np.ndarray | None = None,
              steps: Sequence[int] = ()) -> np.ndarray | tuple[np.ndarray, dict]:
        """x = F(w) as float32 (n, *shape); the identity for a modality without a flow. With ``keep`` (row indices),
        also the trajectory states t_n and t_{n+1} of those rows for each step n in ``steps``: (x, {n: (before,
        after)}), the very states the stored values came from."""
        fm = self.map
        if fm is None:
            return w.astype(np.float32).reshape(-1, *shape)
        outs, kept = [], []
        for i in range(0, w.shape[0], cfg.flow_batch):
            zt = torch.from_numpy(w[i:i + cfg.flow_batch].astype(np.float32).reshape(-1, *shape)).to(device)
            if keep is None:
                outs.append(flow_map(fm.net, zt, fm.index, fm.solver).cpu().numpy())
                continue
            traj = flow_map(fm.net, zt, fm.index, fm.solver, trajectory=True)
            outs.append(traj[-1].cpu().numpy())
            local = keep[(keep >= i) & (keep < i + zt.shape[0])] - i
            kept.append({n: (traj[n][local], traj[n + 1][local]) for n in steps})
        x = np.concatenate(outs)
        if keep is None:
            return x
        states = {n: (torch.cat([k[n][0] for k in kept]), torch.cat([k[n][1] for k in kept])) for n in steps}
        return x, states

    def invert(self, x: np.ndarray, device: str) -> np.ndarray:
        fm = self.map
        if fm is None:
            return x.astype(np.float64).reshape(x.shape[0], -1)
        xt = torch.from_numpy(x.astype(np.float32)).to(device)
        try:
            z = invert(fm.net, xt, fm.index, fm.solver)
        except CertificationError:  # a forced, uncertified map: no exact inverse to measure
            return np.full((x.shape[0], int(np.prod(x.shape[1:]))), np.inf)
        return z.cpu().double().numpy().reshape(x.shape[0], -1)


def resolve_flow(ref: str, base_dir: str | Path, device: str, files: dict[str, str] | None = None) -> Flow:
    """A registered flow by name, or a flow file (``files[ref]`` when given, else ``ref`` relative to
    ``base_dir``)."""
    if files and ref in files:
        return load_flow(files[ref], device)
    if ref in registry():
        return load_flow(ref, device)
    p = Path(ref)
    return load_flow(p if p.is_absolute() else Path(base_dir) / p, device)


def modalities(spec: GraphSpec, model, base_dir: str | Path, tile: int, device: str,
               flow_files: dict[str, str] | None = None) -> list[Modality]:
    mods, shape = [], tuple(spec.shape)
    for i, m in enumerate(spec.modalities):
        wh = block_standardizer(model, m.node) if m.standardize else None
        fm = None
        if m.flow is not None:
            ref, label = m.flow.checkpoint, m.flow.label
            flow = resolve_flow(ref, base_dir, device, flow_files)
            if flow.shape != shape:
                raise ConfigError(f"modalities[{i}].flow: {ref!r} maps images of shape {list(flow.shape)}, "
                                  f"but the spec's shape is {list(shape)}; use a flow trained at that size")
            try:
                flow.label_index(label)  # fails early with the list of classes
            except SpecError as e:
                raise SpecError(f"modalities[{i}].flow.label: {e}") from None
            fm = FlowMap(flow, ref, label, Tiled(flow.net, tile))
        mods.append(Modality(m.node, wh, fm))
    return mods

def cert_record(cert, forced: bool, lipschitz: bool) -> CertificateRecord:
    return CertificateRecord(
        certified=cert.certified, forced=forced and not cert.certified, n_samples=cert.n_samples,
        worst_contraction_rate=max(s.contraction_rate for s in cert.steps),
        max_iterations=max(s.iterations for s in cert.steps), failed_steps=cert.failed_steps(),
        lipschitz_checked=lipschitz, summary=cert.summary(), steps=cert.to_dict()["steps"])


def roundtrip_record(w: np.ndarray, back: np.ndarray, source: str) -> RoundTripRecord:
    err = back - w
    rms = np.sqrt(np.mean(err ** 2, axis=1))
    rel = rms / np.sqrt(np.mean(w ** 2, axis=1))
    return RoundTripRecord(n_samples=w.shape[0], source=source, rel_rms_max=float(rel.max()),
                           rel_rms_mean=float(rel.mean()), abs_rms_max=float(rms.max()),
                           max_abs=float(np.abs(err).max()))
