"""The judge (airbench94-style classifier) and the k-NN precision / recall of the flow-quality figures."""

import numpy as np
import pytest
import torch

from mi_datagen.errors import CheckpointError
from mi_datagen.flows.checkpoint import save_checkpoint
from mi_datagen.flows.images import ImageData
from mi_datagen.flows.judge import Judge, JudgeConfig, evaluate, load_judge, train_judge
from mi_datagen.flows.quality import precision_recall

torch.set_num_threads(1)


def toy(n=512, seed=0) -> ImageData:
    """Ten classes that differ in brightness and in which channel is lit: separable, but not trivially."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 10, n)
    img = rng.integers(0, 40, (n, 3, 32, 32))
    img[np.arange(n), lab % 3] += 40 + 20 * lab[:, None, None]
    return ImageData(img.clip(0, 255).astype(np.uint8), lab, tuple("abcdefghij"), {})


def test_whitening_stem_whitens_2x2_patches():
    """After init the first 12 stem filters map 2×2 patches to (nearly) unit covariance: Σ = λ/(λ + eps) ≈ I."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((64, 1, 33, 33))
    smooth = 0.5 * (base[..., 1:, 1:] + base[..., :-1, :-1])  # neighbouring pixels correlated
    x = torch.from_numpy(np.concatenate([smooth, 0.5 * smooth, -smooth], axis=1) * 0.3).float()
    net = Judge()
    net.init_whitening(x, eps=1e-8)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(net.normalise(x), net.whiten.weight[:12])
    f = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = (f.T @ f / f.shape[0]).numpy()
    # three channels are linear copies of one: the patch covariance has rank 4, so 4 unit directions
    top = np.sort(np.linalg.eigvalsh(cov))[::-1][:4]
    np.testing.assert_allclose(top, 1.0, atol=1e-3)
    assert torch.equal(net.whiten.weight[12:], -net.whiten.weight[:12])


def test_judge_learns_a_toy_task(tmp_path):
    data = toy()
    cfg = JudgeConfig(epochs=6, batch_size=64, seed=2, bf16=False, widths=(32, 128, 128))  # airbench's shape, narrower
    net, rec = train_judge(data, tmp_path / "a", cfg, progress=False)
    assert evaluate(net, data) >= 0.9 and rec["epochs_done"] == 6 and len(rec["history"]) == 6


def test_judge_resumes_to_the_same_bytes(tmp_path):
    data = toy(256)
    cfg = JudgeConfig(epochs=2, batch_size=64, seed=2, bf16=False, widths=(16, 32, 32))
    net, rec = train_judge(data, tmp_path / "a", cfg, progress=False)
    train_judge(data, tmp_path / "b", cfg, progress=False, stop_after_epochs=1)
    again, rec_b = train_judge(data, tmp_path / "b", cfg, progress=False)
    assert rec_b["step"] == rec["step"] == 8 and rec_b["epochs_done"] == 2
    for (k, v), w in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k


def test_load_judge_refuses_other_files(tmp_path):
    save_checkpoint({"format": "something-else", "model": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"not a judge or classifier file \(format 'something-else'\)"):
        load_judge(tmp_path / "x.pt")
    net = Judge()
    save_checkpoint({"format": "mi-datagen-judge/1", "model": net.state_dict(), "record": "{}"}, tmp_path / "j.pt")
    back = load_judge(tmp_path / "j.pt")
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    assert torch.equal(back(x), net.eval()(x))
    small = Judge(widths=(8, 16, 12))  # a judge trained with other widths loads with its own
    save_checkpoint({"format": "mi-datagen-judge/1", "model": small.state_dict(), "record": "{}"}, tmp_path / "s.pt")
    assert torch.equal(load_judge(tmp_path / "s.pt")(x), small.eval()(x))


def test_precision_recall_of_knn_manifolds():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((600, 4))
    same = rng.standard_normal((600, 4))
    p, r = precision_recall(real, same)
    assert p > 0.85 and r > 0.85  # the same distribution: both near 1
    p, r = precision_recall(real, same + 50.0)
    assert p == 0.0 and r == 0.0  # disjoint supports
    collapsed = real[0] + 0.02 * rng.standard_normal((60, 4))  # every sample near one real point
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.3  # realistic but not diverse: high precision, low recall


@pytest.mark.parametrize("ref", ["default-v2", "default-v2.1"])
def test_flow_quality_records_name_the_applied_map(tmp_path, monkeypatch, ref):
    """Two registry entries share one weights file (default-v2 on 15 steps, default-v2.1 on 18): a flow-quality record
    names the flow as given and the map (Flow.map_id, which differs between them), not only the file. The images,
    judge and figures are stand-ins: what is tested is the record."""
    import json

    from typer.testing import CliRunner

    import mi_datagen.flows.images as images
    import mi_datagen.flows.judge as judge
    import mi_datagen.flows.quality as quality
    from mi_datagen.cli import app
    from mi_datagen.flows.io import load_flow

    monkeypatch.setattr(images, "load_images", lambda *a, **k: toy(16))
    monkeypatch.setattr(judge, "load_judge", lambda *a, **k: None)
    row = quality.ClassQuality("a", 0.9, 10.0, 4.0, real_accuracy=1.0, precision=0.6, recall=0.4)
    monkeypatch.setattr(quality, "evaluate_flow", lambda *a, **k: [row])
    out = tmp_path / "q.json"
    r = CliRunner().invoke(app, ["flow-quality", ref, "--data", "imagefolder:x", "--test-data", "imagefolder:y",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    rec, f = json.loads(out.read_text()), load_flow(ref)
    assert (rec["flow"], rec["map"], rec["solver_steps"]) == (ref, f.map_id, {"default-v2": 15, "default-v2.1": 18}[ref])
    assert rec["classes"][0]["targets_met"] == {"consistency": True, "fd": False, "precision": True, "recall": False}
    assert (rec["map"] == rec["flow_sha256"]) == (ref == "default-v2")  # only the re-gridded entry carries a solver id
