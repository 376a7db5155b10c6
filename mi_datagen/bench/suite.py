"""``mi-datagen bench SUITE.yaml``: estimators × datasets × seeds against the exact MI.

A suite names dataset specs (a sweep gives one dataset per member), the pairs to estimate, the
estimator settings and the seeds. Datasets are generated through the generation pipeline into
``<out>/stores`` or the suite's ``stores`` folder (or reused when a complete store of the same job
is there; an interrupted one is resumed). Every run writes ``<out>/runs/<id>.json``; a run that fails is recorded with its
error and the sweep goes on; a finished run is not redone when the suite is run again.
"""

from __future__ import annotations

import json
import shlex
import time
import traceback
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm import tqdm

from mi_datagen.errors import SpecError

Name = str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoreEntry(_Frozen):
    """A suite's dataset: a spec (a sweep gives one dataset per member) and how to generate its store."""

    spec: str = Field(description="spec YAML, relative to the suite file")
    n: int = Field(gt=0)
    seed: int = Field(0, ge=0)
    images: bool = Field(True, description="false: flows removed, the latent blocks are the stored modalities")
    flow: str | None = Field(None, description="the registered flow of every modality (default: what the spec "
                                                "names, or the default flow): pins the map a suite's results use")
    generate: dict = Field(default_factory=dict, description="further GenerateConfig options")

    @field_validator("generate")
    @classmethod
    def generate_options_known(cls, v: dict) -> dict:
        from dataclasses import fields

        from mi_datagen.store.generate import GenerateConfig

        allowed = {f.name for f in fields(GenerateConfig)} - {"n", "seed", "resume", "overwrite", "command"}
        unknown = sorted(set(v) - allowed)
        if unknown:
            raise ValueError(f"generate: unknown options {unknown}; allowed: {sorted(allowed)}")
        return v


class DatasetEntry(StoreEntry):
    pairs: list[tuple[list[Name], list[Name]]] = Field(min_length=1)


class EstimatorEntry(_Frozen):
    name: str
    method: Literal["dv", "mine", "nwj", "js", "infonce", "smile", "club", "gaussian", "ksg", "entropy-diff",
                    "external"]
    settings: dict = Field(default_factory=dict)
    # method: external — your estimator (mi_datagen.estimators.external): exactly one of these
    callable: str | None = Field(default=None, description="package.module:name of a Python estimator")
    command: str | None = Field(default=None, description="a command line that reads DIR/*.npy and prints nats")

    @model_validator(mode="after")
    def external_source(self) -> EstimatorEntry:
        given = [k for k in ("callable", "command") if getattr(self, k) is not None]
        if self.method == "external" and len(given) != 1:
            raise ValueError(f"estimator {self.name!r}: method external needs exactly one of `callable` "
                             f"(package.module:name) or `command`, got {given or 'neither'}")
        if self.method != "external" and given:
            raise ValueError(f"estimator {self.name!r}: {given[0]} applies to method external only")
        return self

    @model_validator(mode="after")
    def settings_known(self) -> EstimatorEntry:
        from dataclasses import fields

        from mi_datagen.estimators.estimate import Settings

        if self.method == "external":  # your estimator's own keyword arguments, checked when it is called
            return self
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(self.settings) - known)
        if unknown:
            raise ValueError(f"estimator {self.name!r}: unknown settings {unknown}; valid keys: {sorted(known)}")
        return self


class RegressionEntry(_Frozen):
    """Regress ``target`` from ``inputs`` with a shallow net at a fixed budget (θ-regression suite)."""

    target: Name = "theta"
    inputs: list[Name] = Field(min_length=1)
    settings: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def settings_known(self) -> RegressionEntry:
        import inspect

        from mi_datagen.estimators.regression import regress

        known = set(inspect.signature(regress).parameters) - {"x", "theta", "seed"}
        unknown = sorted(set(self.settings) - known)
        if unknown:
            raise ValueError(f"regression: unknown settings {unknown}; valid keys: {sorted(known)}")
        return self


class Suite(_Frozen):
    name: str
    description: str = ""
    datasets: list[DatasetEntry] = Field(min_length=1)
    estimators: list[EstimatorEntry] = Field(default_factory=list)
    regression: RegressionEntry | None = None
    seeds: list[int] = Field(default=[0], min_length=1)
    out: str | None = None
    stores: str | None = Field(None, description="folder for the generated stores (default <out>/stores); suites "
                                                 "on the same datasets can share one")
    reference: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="published (correlation, RMSE) per estimator name, shown in the report")

    @field_validator("estimators")
    @classmethod
    def estimator_names_unique(cls, v: list[EstimatorEntry]) -> list[EstimatorEntry]:
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"estimators: names {dup} are used twice; give each setting its own name")
        return v


def _shortcut_path(out: Path, dataset: str, a, b) -> Path:
    return out / "shortcuts" / f"{run_id(dataset, a, b, 'shortcut', 0)}.json"


def _shortcut_once(out: Path, dataset: str, a, b, x, y, truth) -> None:
    """The shortcut check of one (dataset, pair), computed once and kept beside the runs."""
    from mi_datagen.bench.shortcut import shortcut_check

    target = _shortcut_path(out, dataset, a, b)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    rec = {"dataset": dataset, "a": list(a), "b": list(b), **shortcut_check(x, y, truth)}
    target.write_text(json.dumps(rec, indent=1, default=float))


def with_estimators(suite: Suite, refs: list[str]) -> Suite:
    """The suite with external estimators added: ``package.module:name`` or ``cmd:COMMAND LINE``."""
    extra = []
    for ref in refs:
        if ref.startswith("cmd:"):
            command = ref[4:].strip()
            extra.append(EstimatorEntry(name=shlex.split(command)[-1].rsplit("/", 1)[-1] if command else "command",
                                        method="external", command=command))
        else:
            extra.append(EstimatorEntry(name=ref.rpartition(":")[2] or ref, method="external", callable=ref))
    if not extra:
        return suite
    from pydantic import ValidationError

    from mi_datagen.spec.io import format_validation_error

    try:
        return Suite.model_validate({**suite.model_dump(), "estimators": [*suite.estimators, *extra]})
    except ValidationError as err:  # e.g. the name is already used by one of the suite's estimators
        raise SpecError(format_validation_error(err, "--estimator").replace("\n", ";")) from None


def load_suite(path: str | Path) -> Suite:
    from pydantic import ValidationError

    from mi_datagen.spec.io import format_validation_error, load_yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such suite file")
    data = load_yaml(p.read_text(), str(p))
    if isinstance(data, dict) and data.get("kind") == "ssl":
        raise SpecError(f"{p}: an SSL suite (kind: ssl); run it with `mi-datagen ssl {p}`")
    try:
        return Suite.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, str(p)).replace("invalid spec", "invalid suite")) from None


def members(entry: StoreEntry, suite_path: Path) -> list:
    """The datasets of one suite entry: its spec expanded (a sweep gives one per member), with ``entry.flow`` as every
    modality's flow when it is given."""
    from mi_datagen.api import load_and_expand

    specs = load_and_expand(suite_path.parent / entry.spec)
    if entry.flow is None:
        return specs
    return [g.model_copy(update={"modalities": [
        m.model_copy(update={"flow": m.flow.model_copy(update={"checkpoint": entry.flow})}) if m.flow else m
        for m in g.modalities]}) for g in specs]


def _strip_flows(spec):
    return spec.model_copy(update={"modalities": [m.model_copy(update={"flow": None}) for m in spec.modalities]})


def _job(entry: StoreEntry, member, base: Path, stores: Path, progress: bool):
    """(store path, generation job) of one dataset of a suite."""
    from mi_datagen.store.generate import GenerateConfig, GenerationJob

    spec = member if entry.images else _strip_flows(member)
    path = stores / f"{member.name}{'' if entry.images else '-latents'}-n{entry.n}-s{entry.seed}.zarr"
    cfg = GenerateConfig(n=entry.n, seed=entry.seed, progress=progress, resume=True, **entry.generate)
    return path, GenerationJob(spec, cfg, base)


def _plan(path: Path, job):
    from mi_datagen.store.writer import plan

    # another job in that store (e.g. an older flow checkpoint) is regenerated, never mixed
    return plan(str(path), job.generation_key(), resume=True, overwrite=False, replace_other_jobs=True)


def _complete_store(entry: StoreEntry, member, base: Path, stores: Path) -> bool:
    """Whether this dataset's store is already complete for this very job (nothing would be generated)."""
    from mi_datagen.store.writer import Plan

    path, job = _job(entry, member, base, stores, progress=False)
    return _plan(path, job) is Plan.COMPLETE


def _store(entry: StoreEntry, member, base: Path, stores: Path, progress: bool) -> Path:
    from mi_datagen.store.writer import Plan, StoreWriter

    path, job = _job(entry, member, base, stores, progress)
    if _plan(path, job) is not Plan.COMPLETE:  # a finished store of this very job is reused as it is
        StoreWriter(job, str(path), replace_other_jobs=True).run()
    return path


def _config(kind: str, cfg) -> dict:
    """What a run was asked to do, as the suite states it: a stored run is reused only while this is unchanged."""
    if kind == "estimate":
        return {"method": cfg.method, "settings": cfg.settings, "callable": cfg.callable, "command": cfg.command}
    return {"target": cfg.target, "inputs": list(cfg.inputs), "settings": cfg.settings}


def _flows(entry, member, base: Path, cache: dict) -> dict[str, str]:
    """Modality → the map its stored images come from (``Flow.map_id``: the weights' sha256, plus the grid's digest
    for a registered grid; {} for a store of latent blocks): what a run's record names, so that a run on another
    flow's images is never taken for a run on these."""
    if not entry.images:
        return {}
    from mi_datagen.store.modality import resolve_flow

    out = {}
    for m in member.modalities:
        if m.flow is not None:
            key = (m.flow.checkpoint, str(base))
            if key not in cache:
                cache[key] = resolve_flow(m.flow.checkpoint, base, "cpu").map_id
            out[m.node] = cache[key]
    return out


def same_flows(rec: dict, flows: dict[str, str]) -> bool:
    """Was ``rec`` made on images of these ``flows``? Records from before flows were recorded all come from v1
    (``default``): every image suite used it until ``default-v2``."""
    recorded = rec.get("flows")
    if recorded is None:
        from mi_datagen.assets import registry

        v1 = registry().get("default", {}).get("sha256")
        recorded = {k: v1 for k in flows} if rec.get("images") else {}
    return bool(recorded == flows)


def _is_current(rec: dict, entry: StoreEntry, config: dict, flows: dict[str, str] | None = None) -> bool:
    """A finished run is kept only if it was made on a store of the same size and kind, from the same flows
    (``_flows``), with the same ``config`` (``_config``); otherwise (the suite was edited, or its specs now resolve
    to another flow) it is redone. Records written before ``config`` was stored are compared on what they hold:
    the store size and kind, the method and the settings they record."""
    if rec.get("status") != "ok" or rec.get("n") != entry.n or rec.get("images") != entry.images:
        return False
    if flows is not None and not same_flows(rec, flows):
        return False
    if "config" in rec:
        return bool(rec["config"] == json.loads(json.dumps(config, default=float)))
    if "method" not in config:  # a regression record
        return True
    recorded = rec.get("settings") or {}
    return rec.get("method") == config["method"] and all(recorded.get(k, v) == v for k, v in config["settings"].items())


def run_id(dataset: str, a, b, estimator: str, seed: int) -> str:
    return f"{dataset}__{'+'.join(a)}-{'+'.join(b)}__{estimator}__s{seed}"


def select(jobs: list[tuple], names: list[str] | None) -> list[tuple]:
    """The (entry, member) jobs named in ``names``, in that order. A name is a dataset's full name or its
    suffix after the last "_" (``05`` for ``two_modalities_sweep_05``); None selects every job."""
    if names is None:
        return jobs
    chosen = []
    for name in names:
        hits = [j for j in jobs if j[1].name == name or j[1].name.rsplit("_", 1)[-1] == name]
        if not hits:
            raise SpecError(f"datasets: {name!r} names no dataset of this suite; its datasets are "
                            f"{[m.name for _, m in jobs]} (give full names or their suffixes, e.g. 05)")
        chosen += [j for j in hits if j not in chosen]
    return chosen


def run_suite(path: str | Path, out: str | Path | None = None, progress: bool = True,
              stores_dir: str | Path | None = None, generate_only: bool = False, existing_only: bool = False,
              datasets: list[str] | None = None, estimators: list[str] | None = None) -> Path:
    """Run (or finish) a suite; returns its output folder (runs/*.json, results.csv, report.md, plots).
    ``generate_only``: only make (or finish) the suite's stores, with a progress bar per store.
    ``existing_only``: run only on datasets whose store is already complete (e.g. while another process
    is still generating the rest); the others are left for a later run, not recorded as failed.
    ``datasets``: run (or generate) only these datasets, in this order (see :func:`select`); the report
    still aggregates every finished run in the output folder.
    ``estimators``: your own estimators to run beside (or instead of) the suite's, each a Python callable
    ``package.module:name`` (named by ``name``) or ``cmd:COMMAND LINE`` (see ``estimators.external``)."""
    from mi_datagen.bench.report import write_report
    from mi_datagen.estimators.estimate import estimate
    from mi_datagen.estimators.external import estimate_external
    from mi_datagen.estimators.pairs import load_pair
    from mi_datagen.estimators.regression import regress, rmse_floor

    path = Path(path)
    suite = with_estimators(load_suite(path), estimators or [])
    out = Path(out or suite.out or f"runs/bench/{suite.name}")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "suite.yaml").write_text(path.read_text())
    store_root = Path(stores_dir or suite.stores or out / "stores")
    jobs = []
    for entry in suite.datasets:
        for member in members(entry, path):
            jobs.append((entry, member))
    jobs = select(jobs, datasets)
    if generate_only:
        for entry, member in jobs:
            _store(entry, member, path.parent / Path(entry.spec).parent, store_root, progress=progress)
        return out
    todo: list[tuple[str, Any, Any, list[str], list[str], str, Any, int]] = []
    # (run id, dataset entry, member spec, a, b, kind, config, seed)
    for entry, member in jobs:
        for a, b in entry.pairs:
            for est in suite.estimators:
                for seed in suite.seeds:
                    todo.append((run_id(member.name, a, b, est.name, seed), entry, member, a, b, "estimate", est, seed))
        if suite.regression is not None:
            r = suite.regression
            for seed in suite.seeds:
                rid = run_id(member.name, r.inputs, [r.target], "regression", seed)
                todo.append((rid, entry, member, r.inputs, [r.target], "regression", r, seed))
    stores: dict[str, Path] = {}
    ready: dict[str, bool] = {}
    pairs: dict[tuple, tuple] = {}
    flow_cache: dict = {}
    bar = tqdm(todo, desc=f"bench {suite.name}", unit="run", disable=not progress)

    def pair_of(entry, member, base: Path, a, b) -> tuple:
        """(x, y, exact MI) of a pair, its store made or reused once per dataset; one pair kept in memory."""
        if member.name not in stores:
            stores[member.name] = _store(entry, member, base, store_root, progress=False)
        key = (member.name, tuple(a), tuple(b))
        if key not in pairs:
            pairs.clear()
            pairs[key] = load_pair(str(stores[member.name]), list(a), list(b))
        return pairs[key]

    for rid, entry, member, a, b, kind, cfg, seed in bar:
        target, config = out / "runs" / f"{rid}.json", _config(kind, cfg)
        base = path.parent / Path(entry.spec).parent
        flows = _flows(entry, member, base, flow_cache)
        if member.name not in stores and member.name not in ready:  # checked once per dataset, not once per run
            ready[member.name] = _complete_store(entry, member, base, store_root)
        if target.exists() and _is_current(json.loads(target.read_text()), entry, config, flows):
            if ready.get(member.name) and not _shortcut_path(out, member.name, a, b).exists():  # run done before
                _shortcut_once(out, member.name, a, b, *pair_of(entry, member, base, a, b))  # its check, from the store
            continue
        if existing_only and member.name not in stores and not ready[member.name]:
            continue
        rec = {"id": rid, "suite": suite.name, "dataset": member.name, "a": list(a), "b": list(b), "seed": seed,
               "kind": kind, "images": entry.images, "n": entry.n, "config": config, "flows": flows, "status": "ok",
               "error": None}
        t0 = time.perf_counter()
        try:
            x, y, truth = pair_of(entry, member, base, a, b)
            _shortcut_once(out, member.name, a, b, x, y, truth)
            rec.update(store=str(stores[member.name]), truth=truth)
            if kind == "estimate":
                result = (estimate_external(x, y, seed=seed, callable=cfg.callable, command=cfg.command, **cfg.settings)
                          if cfg.method == "external" else estimate(x, y, cfg.method, seed=seed, **cfg.settings))
                rec.update(estimator=cfg.name, method=cfg.method, estimate=result.nats, train_average=result.train_average,
                           curve=result.curve, settings=result.settings, note=result.note, time_s=result.time_s)
            else:
                reg = regress(x, y, seed=seed, **cfg.settings)
                rec.update(estimator="regression", method="regression", estimate=reg["test_rmse"],
                           floor=rmse_floor(reg["theta_std"], truth), **{k: v for k, v in reg.items()
                                                                          if k != "test_rmse"})
        except Exception as e:  # recorded, never stops the sweep
            rec.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-3000:],
                       time_s=time.perf_counter() - t0, estimator=getattr(cfg, "name", "regression"))
        target.write_text(json.dumps(rec, indent=1, default=float))
        bar.set_postfix_str(f"{rid}: {rec.get('estimate', rec['error'])}")
    write_report(out, suite)
    return out

