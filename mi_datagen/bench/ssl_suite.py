"""``mi-datagen ssl SUITE.yaml``: contrastive encoders × datasets × seeds against the exact information.

An SSL suite names datasets (specs; a sweep gives one dataset per member), the contrastive objectives
to train (``mi_datagen.ssl``), shared training settings and seeds. Stores are made (or reused, or
resumed) exactly as for ``bench`` and can be shared with the estimator suites. Every run — one
objective, dataset and seed — trains its encoders once and writes ``<out>/runs/<id>.json`` with the
training curve, the θ probes, the InfoNCE bounds and the representation MI; a finished run is never
redone, a failed one is recorded with its error and the suite goes on. ``report.md`` and plots summarise.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from tqdm import tqdm

from mi_datagen.bench.suite import Name, StoreEntry, _flows, _Frozen, _store, members, same_flows, select
from mi_datagen.errors import SpecError


def _check_settings(v: dict, where: str) -> dict:
    from dataclasses import fields

    from mi_datagen.ssl.train import SSLSettings

    known = {f.name for f in fields(SSLSettings)} - {"objective"}
    unknown = sorted(set(v) - known)
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown}; valid keys: {sorted(known)}")
    return v


class SSLDataset(StoreEntry):
    modalities: list[Name] | None = Field(None, description="modalities to train on (default: all of the store's)")
    probes: list[list[Name]] | Literal["each-and-all", "prefixes"] = Field(
        "each-and-all", description="sets of representations θ is probed from: a list of modality lists, "
                                    "'each-and-all' (each modality, then all) or 'prefixes' (X1, X1+X2, …)")
    pairs: list[tuple[Name, Name]] | None = Field(None, description="modality pairs whose InfoNCE bound and "
                                                                    "representation MI are reported (default: the "
                                                                    "first two)")

    @field_validator("modalities")
    @classmethod
    def at_least_two(cls, v: list[Name] | None) -> list[Name] | None:
        if v is not None and len(set(v)) < 2:
            raise ValueError(f"modalities: {v} — a contrastive objective needs at least two distinct modalities")
        return v


class SSLObjective(_Frozen):
    name: str
    objective: Literal["pairs", "mean"]
    settings: dict = Field(default_factory=dict, description="SSLSettings overriding the suite's `settings`")

    @field_validator("settings")
    @classmethod
    def settings_known(cls, v: dict) -> dict:
        return _check_settings(v, "objective settings")


class SSLSuite(_Frozen):
    kind: Literal["ssl"]
    name: str
    description: str = ""
    datasets: list[SSLDataset] = Field(min_length=1)
    objectives: list[SSLObjective] = Field(min_length=1)
    settings: dict = Field(default_factory=dict, description="SSLSettings shared by every objective")
    seeds: list[int] = Field(default=[0], min_length=1)
    tolerance: float = Field(0.1, ge=0, description="nats an MI estimate may exceed the exact value before a flag")
    out: str | None = None
    stores: str | None = None

    @field_validator("settings")
    @classmethod
    def settings_known(cls, v: dict) -> dict:
        return _check_settings(v, "settings")

    @model_validator(mode="after")
    def objective_names_unique(self) -> SSLSuite:
        names = [o.name for o in self.objectives]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"objectives: names {dup} are used twice; give each its own name")
        return self


def load_ssl_suite(path: str | Path) -> SSLSuite:
    from pydantic import ValidationError

    from mi_datagen.spec.io import format_validation_error, load_yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such suite file")
    data = load_yaml(p.read_text(), str(p))
    if not isinstance(data, dict) or data.get("kind") != "ssl":
        raise SpecError(f"{p}: not an SSL suite (it needs `kind: ssl`); estimator suites run with `mi-datagen bench`")
    try:
        return SSLSuite.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, str(p)).replace("invalid spec", "invalid suite")) from None


def probe_sets(entry: SSLDataset, modalities: list[str]) -> list[list[str]]:
    if entry.probes == "prefixes":
        return [modalities[:k] for k in range(1, len(modalities) + 1)]
    if entry.probes == "each-and-all":
        return [[m] for m in modalities] + [list(modalities)]
    return [list(p) for p in entry.probes]


def dataset_labels(jobs: list[tuple]) -> list[str]:
    """A name per (entry, member): the member's name, or, where two datasets share it (one spec at two sizes or
    data seeds), the name with n, data seed and '-latents' as in the store's file name."""
    names = [m.name for _, m in jobs]
    return [m.name if names.count(m.name) == 1 else f"{m.name}{'' if e.images else '-latents'}-n{e.n}-s{e.seed}"
            for e, m in jobs]


def run_ssl_suite(path: str | Path, out: str | Path | None = None, progress: bool = True,
                  stores_dir: str | Path | None = None, datasets: list[str] | None = None) -> Path:
    """Run (or finish) an SSL suite; returns its output folder (runs/*.json, report.md, plots)."""
    from mi_datagen.bench.ssl_report import write_ssl_report
    from mi_datagen.ssl import SSLSettings, Truth, evaluate, train_encoders
    from mi_datagen.store.store import Store

    path = Path(path)
    suite = load_ssl_suite(path)
    out = Path(out or suite.out or f"runs/ssl/{suite.name}")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "suite.yaml").write_text(path.read_text())
    store_root = Path(stores_dir or suite.stores or out / "stores")
    jobs = [(e, m) for e in suite.datasets for m in members(e, path)]
    jobs = select(jobs, datasets)
    labels = dataset_labels(jobs)
    todo = [(e, m, label, o, s) for (e, m), label in zip(jobs, labels) for o in suite.objectives for s in suite.seeds]
    bar = tqdm(todo, desc=f"ssl {suite.name}", unit="run", disable=not progress)
    flow_cache: dict = {}
    for entry, member, label, obj, seed in bar:
        rid = f"{label}__{obj.name}__s{seed}"
        target = out / "runs" / f"{rid}.json"
        flows = _flows(entry, member, path.parent / Path(entry.spec).parent, flow_cache)
        if target.exists():
            old = json.loads(target.read_text())
            if old.get("status") == "ok" and same_flows(old, flows):  # a run on another flow's images is redone
                continue
        rec: dict = {"id": rid, "suite": suite.name, "dataset": label, "objective": obj.name,
                     "method": obj.objective, "seed": seed, "images": entry.images, "n": entry.n, "flows": flows,
                     "status": "ok", "error": None}
        t0 = time.perf_counter()
        try:
            store = Store(_store(entry, member, path.parent / Path(entry.spec).parent, store_root, progress=False))
            mods = entry.modalities or store.modalities
            settings = SSLSettings.make(**{**suite.settings, **obj.settings, "objective": obj.objective})
            enc = train_encoders(store, mods, settings, seed=seed, progress=progress)
            ev = evaluate(enc, Truth(store), probe_sets(entry, mods), entry.pairs, tolerance=suite.tolerance)
            rec.update(store=store.path, modalities=mods, train=enc.record, **ev.to_dict())
        except Exception as e:  # recorded, never stops the suite
            rec.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-3000:])
        rec["time_s"] = time.perf_counter() - t0
        target.write_text(json.dumps(rec, indent=1, default=float))
        bar.set_postfix_str(f"{rid}: {rec['status']}")
    write_ssl_report(out, suite)
    return out
