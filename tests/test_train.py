"""`facedex train` on real LFW faces: losses, data checks, a short run, resume, NaN
guards, SFace conversion, export round trip through the rest of facedex, the CLI.

The training data is built once per session with the real `facedex clean`
pipeline (4 people x 8 LFW images, 25 % held out). Runs use a narrow
MobileFaceNet so the whole file stays within a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import tomllib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="facedex train needs PyTorch: pip install 'facedex[train]'")

from facedex.errors import (  # noqa: E402
    CheckpointError,
    ConversionError,
    DataError,
    EmbedderMismatchError,
    NonFiniteError,
    TrainConfigError,
    TrainError,
    UnknownNameError,
)
from facedex.names import person_key  # noqa: E402
from facedex.train.backbones import create_backbone, list_backbones  # noqa: E402
from facedex.train.backbones.common import forward_from  # noqa: E402
from facedex.train.checkpoint import load_checkpoint  # noqa: E402
from facedex.train.config import (  # noqa: E402
    AugmentConfig,
    DataConfig,
    TrainConfig,
    load_config,
    resolve,
    to_toml,
)
from facedex.train.data import Augmenter, scan_dataset  # noqa: E402
from facedex.train.loop import train  # noqa: E402
from facedex.train.losses import (  # noqa: E402
    LOSSES,
    CenterLoss,
    CombinedMarginLoss,
    LossOutput,
    LossSpec,
    MarginConfig,
    SoftmaxCenterLoss,
    create_loss,
)

from .conftest import LFW, check_schema, lfw_image, lfw_images, make_people  # noqa: E402
from .test_cli import facedex  # noqa: E402

PEOPLE = ["Hugo_Chavez", "Ariel_Sharon", "Jean_Chretien", "Junichiro_Koizumi"]
STRANGERS = ["Colin_Powell", "Tony_Blair", "Vladimir_Putin"]

# A narrow MobileFaceNet from scratch: quick on 2 cores, still a real network.
TINY = {"model.backbone": "mobilefacenet", "model.init": "scratch",
        "model.args": {"width": 16, "blocks": [1, 1, 1], "embedding_dim": 64, "dropout": 0.2},
        "batch_size": 8, "validation.batch_size": 64, "export.enabled": False}


# --- data built with the real pipeline, once ------------------------------------------------


@pytest.fixture(scope="session")
def clean_data(tmp_path_factory):
    """`facedex clean` output: 4 people x 8 images, split 25 % for validation."""
    from facedex.clean import CleanConfig, clean

    root = tmp_path_factory.mktemp("train-data")
    src = make_people(root / "raw", {p: lfw_images(p)[:8] for p in PEOPLE})
    report = clean(src, root / "clean", CleanConfig(split=0.25, seed=0))
    assert report.summary["kept"] >= 28, report.summary
    return root / "clean"


@pytest.fixture(scope="session")
def stranger_crops(tmp_path_factory):
    from facedex.clean import CleanConfig, clean

    root = tmp_path_factory.mktemp("train-strangers")
    src = make_people(root / "raw", {p: lfw_images(p)[:3] for p in STRANGERS})
    clean(src, root / "clean", CleanConfig())
    return root / "clean"


@pytest.fixture(scope="session")
def tiny_pairs(tmp_path_factory):
    """An LFW pairs file of 2 folds with people not in PEOPLE (2 matched + 2 mismatched each)."""
    lines = ["2\t2",
             "George_W_Bush\t1\t2", "Gerhard_Schroeder\t1\t2",
             "George_W_Bush\t3\tGerhard_Schroeder\t3", "Donald_Rumsfeld\t1\tGerhard_Schroeder\t4",
             "Donald_Rumsfeld\t2\t3", "George_W_Bush\t4\t5",
             "Donald_Rumsfeld\t4\tGeorge_W_Bush\t6", "Gerhard_Schroeder\t5\tDonald_Rumsfeld\t5"]
    path = tmp_path_factory.mktemp("pairs") / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def crops_of(data, n=8):
    ds, store = scan_dataset(data)
    return store.get(np.arange(min(n, len(store))))


# --- losses -------------------------------------------------------------------------------------


def test_center_loss_value_gradient_and_centre_update_are_the_papers():
    loss = CenterLoss(num_classes=2, embedding_dim=2, center_lr=0.5, normalize=False)
    loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    value = loss(x, y)
    # L_C = 1/(2m) * sum ||x_i - c_yi||^2 = (1 + 4 + 4) / 6
    assert value.item() == pytest.approx(9 / 6)
    value.backward()
    c_y = loss.centers[y]
    torch.testing.assert_close(x.grad, (x.detach() - c_y) / 3)  # dL/dx_i = (x_i - c_yi) / m
    # a gradient step moves every feature towards its centre
    before = (x.detach() - c_y).norm(dim=1)
    after = (x.detach() - 0.5 * x.grad - c_y).norm(dim=1)
    assert torch.all(after < before)
    # Eq. 4: delta_c_j = sum (c_j - x_i) / (1 + n_j); c_j -= alpha * delta_c_j
    loss.update(x.detach(), y)
    torch.testing.assert_close(loss.centers[0], torch.tensor([0.0, 0.0]) - 0.5 * torch.tensor([-1.0, -2.0]) / 3)
    torch.testing.assert_close(loss.centers[1], torch.tensor([1.0, 1.0]) - 0.5 * torch.tensor([-2.0, 0.0]) / 2)


def test_center_updates_converge_to_the_class_means():
    loss = CenterLoss(num_classes=2, embedding_dim=3, center_lr=0.5, normalize=False)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    for _ in range(60):
        loss.update(x, y)
    torch.testing.assert_close(loss.centers, torch.stack([x[:3].mean(0), x[3:].mean(0)]), atol=1e-4, rtol=0)


def test_joint_center_loss_weights_its_term_and_normalises():
    joint = SoftmaxCenterLoss(LOSSES["center"].config(weight=0.25), num_classes=3, embedding_dim=4)
    emb = torch.randn(5, 4) * 10
    y = torch.tensor([0, 1, 2, 0, 1])
    out = joint(emb, y)
    assert set(out.parts) == {"softmax", "center"}
    assert out.loss.item() == pytest.approx(out.parts["softmax"].item() + 0.25 * out.parts["center"].item(), rel=1e-6)
    assert out.parts["center"].item() <= 2.0 + 1e-6  # unit vectors vs zero centres: 1/2 * 1 ... bounded


@pytest.mark.parametrize("name,expected", [("arcface", lambda c: math.cos(math.acos(c) + 0.5)),
                                           ("cosface", lambda c: c - 0.35)])
def test_margin_losses_apply_their_margin_to_the_true_class_only(name, expected):
    loss, _ = create_loss(name, {"s": 1.0}, num_classes=3, embedding_dim=2)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    emb = torch.tensor([[math.cos(0.3), math.sin(0.3)]])
    cos = loss.cosines(emb)[0]
    target = loss.target_logit(cos[:1])[0]
    assert target.item() == pytest.approx(expected(cos[0].item()), abs=1e-6)


def test_margin_loss_stays_finite_where_arccos_and_sqrt_are_not():
    for m in (MarginConfig(m2=0.5), MarginConfig(m1=1.35, m2=0.1), MarginConfig(m3=0.35)):
        loss = CombinedMarginLoss(m, num_classes=2, embedding_dim=3)
        emb = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], requires_grad=True)
        with torch.no_grad():
            loss.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        out = loss(emb, torch.tensor([0, 0]))  # cos = +1 and -1 exactly
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="arcface"):
        create_loss("arcfaec", None, num_classes=2, embedding_dim=4)
    with pytest.raises(TrainConfigError, match="its settings are"):
        create_loss("center", {"lambda": 1.0}, num_classes=2, embedding_dim=4)
    with pytest.raises(UnknownNameError, match="mobilefacenet"):
        create_backbone("resnet-tiny")


# --- backbones --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", list_backbones(), ids=lambda s: s.name)
def test_every_backbone_embeds_and_runs_stage_by_stage(spec):
    net, args = create_backbone(spec.name)
    net.eval()
    x = torch.rand(1, 3, 112, 112) * 255
    with torch.no_grad():
        y = net(x)
        assert y.shape == (1, net.embedding_dim) and torch.isfinite(y).all()
        torch.testing.assert_close(forward_from(net, x, 0), y)
        h = x
        h = net.norm(h)
        k = len(net.stages()) // 2
        for s in net.stages()[:k]:
            h = s(h)
        torch.testing.assert_close(forward_from(net, h, k), y)
    rebuilt, _ = create_backbone(spec.name, args)  # checkpoints rebuild from the stored arguments
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in net.parameters())


def test_sface_conversion_matches_the_onnx_model_on_real_faces(clean_data):
    from facedex.embed import make_embedder
    from facedex.train.backbones.sface import CONVERSION_TOLERANCE, pretrained_sface

    crops = crops_of(clean_data, 8)
    net, report = pretrained_sface(check_inputs=crops.astype(np.float32).transpose(0, 3, 1, 2))
    assert report["relative_diff"] <= CONVERSION_TOLERANCE and report["min_cosine"] > 0.99999
    with torch.no_grad():
        mine = torch.nn.functional.normalize(net.eval()(torch.from_numpy(crops).permute(0, 3, 1, 2).float())).numpy()
    theirs = make_embedder("sface-2021dec").embed_crops(list(crops))
    assert np.min(np.sum(mine * theirs, 1)) > 0.99999


def test_sface_conversion_refuses_a_graph_it_does_not_know(tmp_path):
    import onnx

    from facedex import models
    from facedex.train.backbones.sface import convert_onnx

    m = onnx.load(str(models.prepared_path(models.get_card("sface-2021dec"))))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    for a in conv.attribute:
        if a.name == "dilations":
            a.ints[:] = [2, 2]
    bad = tmp_path / "odd.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(ConversionError, match="node 'conv_1.*unsupported geometry"):
        convert_onnx(bad)
    # a different head size is caught too
    m = onnx.load(str(models.prepared_path(models.get_card("sface-2021dec"))))
    next(n for n in m.graph.node if n.op_type == "Conv").attribute[-1].ints[:] = [2, 2]  # strides of conv_1
    onnx.save(m, str(bad))
    with pytest.raises(ConversionError, match="Gemm.*takes 50176 inputs"):
        convert_onnx(bad)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ConversionError, match="not a readable ONNX"):
        convert_onnx(tmp_path / "junk.onnx")


# --- data ---------------------------------------------------------------------------------------


def test_clean_output_is_read_with_its_split(clean_data):
    ds, store = scan_dataset(clean_data)
    assert ds.source == "manifest" and ds.split_from == "manifest"
    assert ds.classes == sorted(PEOPLE)
    assert len(ds.val) >= 4 and len(ds.train) >= 20
    assert store.get(np.arange(3)).shape == (3, 112, 112, 3)
    assert ds.fingerprint() == scan_dataset(clean_data)[0].fingerprint()


def test_plain_folders_are_split_per_person_reproducibly(clean_data, tmp_path):
    plain = tmp_path / "plain"
    for p in PEOPLE:
        shutil.copytree(clean_data / p, plain / p, ignore=shutil.ignore_patterns("wide"))
    a, _ = scan_dataset(plain, DataConfig(val_fraction=0.25), seed=3)
    b, _ = scan_dataset(plain, DataConfig(val_fraction=0.25), seed=3)
    assert a.source == "folders" and a.split_from == "random"
    assert [s.path for s in a.val] == [s.path for s in b.val] and len(a.val) >= 4
    # adding a person does not move anyone else's images
    shutil.copytree(clean_data / PEOPLE[0], plain / "Zz_Extra")
    c, _ = scan_dataset(plain, DataConfig(val_fraction=0.25), seed=3)
    assert {s.path for s in a.val} <= {s.path for s in c.val}


def _write_png(path, size=112):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)


@pytest.mark.parametrize("case,match", [
    ("missing", "no such folder"),
    ("empty", "no person folders with images"),
    ("one_person", "at least 2 people"),
    ("one_image", "0 of 2 people have at least 2 training image"),
    ("unreadable", "is not a readable image"),
    ("wrong_size", "250x250, not a 112x112 aligned crop"),
    ("bad_manifest", "manifest.jsonl:2: not a JSON object"),
    ("manifest_missing_file", "is missing"),
])
def test_bad_data_folders_give_clear_errors(tmp_path, clean_data, case, match):
    root = tmp_path / "data"
    if case != "missing":
        root.mkdir()
    if case in ("one_person", "unreadable", "wrong_size"):
        for i in range(4):
            _write_png(root / "Alice" / f"{i}.png")
    if case in ("unreadable", "wrong_size"):
        for i in range(4):
            _write_png(root / "Bob" / f"{i}.png")
    if case == "one_image":
        _write_png(root / "Alice" / "0.png")
        _write_png(root / "Bob" / "0.png")
    if case == "unreadable":
        (root / "Bob" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    if case == "wrong_size":
        shutil.copy(lfw_image("Hugo_Chavez", 1), root / "Bob" / "raw.jpg")
    if case in ("bad_manifest", "manifest_missing_file"):
        lines = (clean_data / "manifest.jsonl").read_text().splitlines()
        shutil.copytree(clean_data, root, dirs_exist_ok=True)
        if case == "bad_manifest":
            lines.insert(1, "{not json")
        else:
            kept = next(i for i, ln in enumerate(lines) if json.loads(ln)["decision"] == "kept")
            (root / json.loads(lines[kept])["output"]).unlink()
        (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match) as info:
        scan_dataset(root)
    msg = str(info.value)
    assert str(root.name) in msg
    if case in ("unreadable", "wrong_size"):
        assert "facedex clean" in msg and "skip_bad_images" in msg
        ds, _ = scan_dataset(root, DataConfig(skip_bad_images=True))  # opt-in: skip and report
        assert len(ds.skipped) == 1 and len(ds.train) + len(ds.val) == 8


def test_person_names_match_across_datasets():
    assert person_key("José María_Aznar") == person_key("Jose_Maria_Aznar") == "jose_maria_aznar"


def test_augmenter_is_seeded_and_its_neutral_settings_change_nothing():
    x = torch.rand(4, 3, 112, 112) * 255
    none = Augmenter(AugmentConfig(flip=False, shift=0, scale=0, rotate=0, color=0, gray=0))
    torch.testing.assert_close(none(x, torch.Generator().manual_seed(0)), x)
    flip = Augmenter(AugmentConfig(flip=True, shift=0, scale=0, rotate=0, color=0, gray=0))
    y = flip(x, torch.Generator().manual_seed(0))
    for i in range(4):
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], torch.flip(x[i], [2]))
    assert any(not torch.equal(y[i], x[i]) for i in range(4))
    full = Augmenter(AugmentConfig(rotate=5))
    a, b = full(x, torch.Generator().manual_seed(5)), full(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.min() >= 0 and a.max() <= 255


# --- config -------------------------------------------------------------------------------------


def test_config_file_round_trip_and_errors(tmp_path):
    cfg = resolve(TrainConfig())
    text = to_toml(cfg, "header")
    assert TrainConfig.from_dict(tomllib.loads(text)) == cfg
    path = tmp_path / "train.toml"
    path.write_text('epochs = 3\n[loss]\nname = "center"\n[loss.args]\nweight = 0.1\n')
    got = load_config(path)
    assert got.epochs == 3 and got.loss.name == "center" and got.loss.args == {"weight": 0.1}
    for text, match in [("epochs = 'many'", "epochs must be an integer"),
                        ("[optim]\nlrr = 0.1", "unknown setting 'lrr' at \\[optim\\]; known: name, lr"),
                        ("[optim]\nlr = 'fast'", "optim.lr must be a number or 'auto'"),
                        ("[stability]\non_nonfinite = 'ignore'", "'stop' or 'skip'"),
                        ("[model]\ncache_views = 2", "set model.freeze >= 1"),
                        ("epochs = ", "not valid TOML")]:
        path.write_text(text)
        with pytest.raises(TrainConfigError, match=match) as info:
            load_config(path)
        assert str(path) in str(info.value)


def test_auto_settings_follow_the_starting_point():
    ft = resolve(TrainConfig())
    assert ft.model.init == "sface" and ft.model.freeze_bn is True and ft.loss.head_init == "class_means"
    scratch = resolve(TrainConfig.from_dict({"model": {"backbone": "mobilefacenet"}}))
    assert scratch.model.init == "scratch" and scratch.optim.lr == 0.1 and scratch.optim.warmup_epochs == 1.0


# --- training runs --------------------------------------------------------------------------------


def test_short_run_learns_without_nan_and_writes_its_files(clean_data, stranger_crops, tmp_path):
    out = tmp_path / "run"
    over = {**TINY, "epochs": 8, "loss.name": "center", "validation.strangers": str(stranger_crops),
            "export.enabled": True, "export.name": "tiny-center"}
    events = []
    result = train(clean_data, out, overrides=over, progress=events.append)
    hist = [h for h in result.history if h["epoch"] > 0]
    losses = [h["train_loss"] for h in hist]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    assert hist[-1]["train_acc"] > hist[0]["train_acc"]
    assert all(h["skipped_steps"] == 0 for h in hist)
    assert result.history[0]["epoch"] == 0 and "val_rank1" in result.history[0]  # before training
    assert hist[-1]["val_stranger_source"] == "strangers folder"
    for f in ("config.toml", "metrics.csv", "metrics.json", "curves.png", "run.json", "checkpoints/last.pt",
              "checkpoints/best.pt", "export/tiny-center.onnx", "export/tiny-center.card.json"):
        assert (out / f).is_file(), f
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr,train_loss") and len(rows) == 1 + 9
    assert json.loads((out / "metrics.json").read_text())["epochs"][-1]["epoch"] == 8
    assert any(e.kind == "step" and e.images_per_s > 0 for e in events)
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["model"]["backbone"] == "mobilefacenet" and ck["model"]["args"]["width"] == 16
    assert ck["config"]["loss"]["name"] == "center" and ck["classes"] == sorted(PEOPLE)
    assert ck["loss"]["state_dict"]["center.centers"].abs().sum() > 0
    assert set(ck["rng"]) >= {"python", "numpy", "torch", "augment"} and ck["epoch"] == 8
    # the same run in the same folder is refused; another folder gives the same result (seeded)
    with pytest.raises(TrainError, match="--resume"):
        train(clean_data, out, overrides=over)


def _tiny_run(data, out, stop_at=None, **extra):
    stop = threading.Event()
    losses = []

    def progress(e):
        if e.kind == "step":
            losses.append(e.loss)
            if stop_at is not None and len(losses) == stop_at:
                stop.set()

    over = {**TINY, "epochs": 2, "loss.name": "center", "validation.every": 0, "validation.before": False, **extra}
    return train(data, out, overrides=over, progress=progress, stop=stop), losses


def test_resume_takes_exactly_the_step_an_uninterrupted_run_takes(clean_data, tmp_path):
    full, full_losses = _tiny_run(clean_data, tmp_path / "full")
    steps = len(full_losses)
    cut = steps // 2 + 1  # inside the second epoch
    part, part_losses = _tiny_run(clean_data, tmp_path / "cut", stop_at=cut)
    assert part.interrupted and part_losses == full_losses[:cut]
    ck = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert ck["kind"] == "interrupted" and ck["global_step"] == cut and ck["step_in_epoch"] > 0
    losses = []
    rest = train(clean_data, tmp_path / "cut", resume=True,
                 progress=lambda e: losses.append(e.loss) if e.kind == "step" else None)
    assert not rest.interrupted
    assert losses[0] == full_losses[cut]  # the next step, bit for bit
    assert losses == full_losses[cut:]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for k, v in a["model"]["state_dict"].items():
        assert torch.equal(v, b["model"]["state_dict"][k]), k
    assert torch.equal(a["loss"]["state_dict"]["center.centers"], b["loss"]["state_dict"]["center.centers"])
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_resume_refuses_other_settings_and_other_data(clean_data, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(clean_data, tmp_path / "none", resume=True)
    _tiny_run(clean_data, tmp_path / "run", **{"epochs": 1})
    with pytest.raises(TrainConfigError, match="optim.momentum"):
        train(clean_data, tmp_path / "run", resume=True, overrides={"optim.momentum": 0.5})
    other = tmp_path / "other"
    shutil.copytree(clean_data, other)
    lines = (other / "manifest.jsonl").read_text().splitlines()
    (other / "manifest.jsonl").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(CheckpointError, match="not the images this run was trained on"):
        train(other, tmp_path / "run", resume=True, overrides={"epochs": 2})


class _NanAfter(torch.nn.Module):
    """A loss that turns NaN from its 4th call (fault injection for the guard)."""

    def __init__(self, config, num_classes, embedding_dim):
        super().__init__()
        self.inner = SoftmaxCenterLoss(LOSSES["center"].config(), num_classes, embedding_dim)
        self.calls = 0

    def init_from_means(self, means):
        self.inner.init_from_means(means)

    def after_step(self, emb, y):
        self.inner.after_step(emb, y)

    def forward(self, emb, y):
        self.calls += 1
        out = self.inner(emb, y)
        if self.calls >= 4:
            bad = out.parts["center"] * float("nan")
            return LossOutput(out.loss + bad, out.logits, {**out.parts, "center": bad})
        return out


@pytest.fixture
def nan_loss():
    LOSSES["nan-after-3"] = LossSpec("nan-after-3", _NanAfter, LOSSES["center"].config)
    yield "nan-after-3"
    del LOSSES["nan-after-3"]


def test_nan_stops_with_a_clear_message_and_the_last_good_checkpoint(clean_data, tmp_path, nan_loss):
    with pytest.raises(NonFiniteError) as info:
        _tiny_run(clean_data, tmp_path / "run", **{"loss.name": nan_loss, "epochs": 3})
    msg = str(info.value)
    assert "epoch 2, step 1" in msg and "center term" in msg and "last good checkpoint" in msg
    assert "lower optim.lr" in msg and 'on_nonfinite = "skip"' in msg
    ck = load_checkpoint(info.value.checkpoint)  # epoch 1's checkpoint: finite weights
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"]["state_dict"].values()
                                    if v.is_floating_point())


def test_nan_steps_can_be_skipped_instead(clean_data, tmp_path, nan_loss):
    over = {"loss.name": nan_loss, "epochs": 2, "stability.on_nonfinite": "skip", "stability.max_skipped_steps": 100}
    result, losses = _tiny_run(clean_data, tmp_path / "run", **over)
    assert sum(h["skipped_steps"] for h in result.history) == len(losses) - 3
    with pytest.raises(NonFiniteError, match="2 steps in a row"):
        _tiny_run(clean_data, tmp_path / "run2", **{**over, "stability.max_skipped_steps": 1})


# --- export and the rest of facedex -------------------------------------------------------------


def test_export_round_trip_through_facedex_and_the_gallery_refuses_other_vectors(clean_data, tmp_path):
    import facedex
    from facedex import models
    from facedex.embed import make_embedder
    from facedex.train.checkpoint import build_model
    from facedex.train.export import TOLERANCE, export_checkpoint

    result, _ = _tiny_run(clean_data, tmp_path / "run", **{"epochs": 1})
    crops = crops_of(clean_data, 16)
    ex = export_checkpoint(result.last_checkpoint, tmp_path / "exported", "tiny", check_pixels=crops)
    assert ex.max_abs_diff <= TOLERANCE and ex.min_cosine >= 0.99999
    card = json.loads(ex.card.read_text())
    assert card["source"] == "tiny.onnx" and card["sha256"] == models.sha256_file(ex.onnx)
    assert card["embedding_dim"] == 64 and card["input_size"] == [112, 112] and card["mean"] == [0, 0, 0]
    assert card["id"] == ex.card_id == f"tiny@{card['sha256'][:16]}"
    # facedex loads it by path and gives PyTorch's embeddings
    emb = make_embedder(str(ex.onnx))
    got = emb.embed_crops(list(crops))
    net = build_model(load_checkpoint(result.last_checkpoint))
    with torch.no_grad():
        want = torch.nn.functional.normalize(net(torch.from_numpy(crops).permute(0, 3, 1, 2).float())).numpy()
    assert np.min(np.sum(got * want, 1)) > 0.9999
    # a gallery built with the exported embedder refuses the default embedder's vectors, and vice versa
    path = tmp_path / "g.gallery"
    with facedex.Gallery.open(path, create=True, embedder=str(ex.onnx)) as g:
        g.add_embeddings("Someone", got[:2], emb.id)
        sface = make_embedder("sface-2021dec")
        with pytest.raises(EmbedderMismatchError):
            g.add_embeddings("Someone", sface.embed_crops(list(crops[:2])), sface.id)
    with pytest.raises(EmbedderMismatchError):
        facedex.Gallery.open(path, embedder="sface-2021dec")
    # the folder can be moved: the card's source is relative
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "exported"), moved)
    assert make_embedder(str(moved / "tiny.onnx")).id == ex.card_id


@pytest.mark.slow
def test_cli_fine_tunes_sface_exports_and_the_model_enrolls_and_identifies(clean_data, stranger_crops, tiny_pairs,
                                                                            tmp_path):
    out = tmp_path / "ft"
    r = facedex("train", "run", clean_data, out, "--freeze", "27", "--cache-views", "2", "--epochs", "2",
                "--batch-size", "8", "--strangers", stranger_crops, "--lfw", LFW, "--lfw-pairs", tiny_pairs,
                "--name", "sface-ft", "--json", check_rc=0)
    res = check_schema("train-run", json.loads(r.stdout))
    assert res["interrupted"] is False and res["epochs_done"] == 2
    first, last = res["history"][0], res["history"][-1]
    assert first["epoch"] == 0 and last["epoch"] == 2
    assert first["lfw_pairs"] == 8 and "lfw_accuracy" in last and last["lfw_pairs_excluded"] == 0
    assert res["run"]["sface_conversion"]["relative_diff"] < 1e-4
    onnx = out / "export" / "sface-ft.onnx"
    assert res["export"]["onnx"] == str(onnx)
    card = json.loads((out / "export" / "sface-ft.card.json").read_text())
    assert 0 < card["default_threshold"] < 1
    assert card["extra"]["train"]["init"] == "sface" and "outlier_threshold" in card["extra"].get("clean", {})
    assert (out / "train.log").read_text().count("validating") >= 2
    # the exported model is a facedex embedder: enroll and identify through the CLI
    people = make_people(tmp_path / "people", {p: lfw_images(p)[20:23] for p in PEOPLE[:2]})
    gallery = tmp_path / "ft.gallery"
    facedex("enroll", gallery, people, "--embedder", onnx, "--multiple", "largest", check_rc=0)
    r = facedex("identify", gallery, lfw_image(PEOPLE[0], 30), "--json", check_rc=0)
    faces = json.loads(r.stdout)["results"][0]["faces"]
    assert PEOPLE[0] in [f["name"] for f in faces]
    # and a gallery of SFace vectors refuses it
    facedex("enroll", tmp_path / "sface.gallery", people, "--multiple", "largest", check_rc=0)
    r = facedex("enroll", tmp_path / "sface.gallery", people, "--embedder", onnx, check_rc=2)
    assert "refusing" in r.stderr
    # the last checkpoint exports on its own too
    r = facedex("train", "export", out / "checkpoints" / "last.pt", "--out", tmp_path / "again", "--json", check_rc=0)
    exported = check_schema("train-export", json.loads(r.stdout))
    assert exported["card_id"].startswith("sface-ft@")
    assert exported["checkpoint"] == str(out / "checkpoints" / "last.pt")


@pytest.mark.slow
def test_cli_errors_exit_2_with_the_reason(tmp_path):
    (tmp_path / "one" / "Alice").mkdir(parents=True)
    _write_png(tmp_path / "one" / "Alice" / "a.png")
    r = facedex("train", "run", tmp_path / "one", tmp_path / "out", check_rc=2)
    assert "at least 2 people" in r.stderr
    r = facedex("train", "run", tmp_path / "one", tmp_path / "out2", "--backbone", "mobilefacenet", "--init", "sface",
                check_rc=2)
    assert "needs backbone 'sface'" in r.stderr
    assert not (tmp_path / "out2").exists()  # the settings are checked before OUT is created
    r = facedex("train", "list", check_rc=0)
    assert "mobilefacenet" in r.stdout and "arcface" in r.stdout
    r = facedex("train", "list", "--json", check_rc=0)  # JSON, not the table
    listed = check_schema("train-list", json.loads(r.stdout))
    assert "mobilefacenet" in [b["name"] for b in listed["backbones"]]
    assert "sface" in next(b for b in listed["backbones"] if b["name"] == "sface")["pretrained"]
    assert "arcface" in [x["name"] for x in listed["losses"]]
    r = facedex("train", "run", "--print-config", "--backbone", "mobilefacenet", check_rc=0)
    assert tomllib.loads(r.stdout)["model"]["init"] == "scratch"
    r = facedex("train", "run", "--print-config", "--epochs", "4", "--json", check_rc=0)
    assert check_schema("train-config", json.loads(r.stdout))["epochs"] == 4
    r = facedex("train", "run", check_rc=2)
    assert "DATA and OUT are required" in r.stderr
    for bad in (["--epochs", "0"], ["--lr", "-1"], ["--batch-size", "1"], ["--cache-views", "65"]):
        r = facedex("train", "run", tmp_path / "one", tmp_path / "out3", *bad, check_rc=2)
        assert f"argument {bad[0]}" in r.stderr
    assert not (tmp_path / "out3").exists()


# --- the command stopped by Ctrl-C: its JSON -----------------------------------------------------

_TINY_TOML = """epochs = 2
batch_size = 8
[model]
backbone = "mobilefacenet"
init = "scratch"
args = { width = 16, blocks = [1, 1, 1], embedding_dim = 64, dropout = 0.2 }
[loss]
name = "center"
[validation]
every = 0
before = false
batch_size = 64
[export]
enabled = false
"""


def _cli_run_stopped_at_the_first_step(data, tmp_path, monkeypatch, capsys, action):
    """`facedex train run --json` in this process; ``action`` runs at the first step (a Ctrl-C)."""
    from facedex.cli import main
    from facedex.cli import train as train_cli

    config = tmp_path / "tiny.toml"
    config.write_text(_TINY_TOML)
    original = train_cli._Bars.__call__
    fired = []

    def call(self, e):
        original(self, e)
        if e.kind == "step" and not fired:
            fired.append(e)
            action()

    monkeypatch.setattr(train_cli._Bars, "__call__", call)
    code = main.main(["train", "run", str(data), str(tmp_path / "out"), "--config", str(config), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_cli_ctrl_c_stops_after_the_step_with_a_checkpoint_and_valid_json(clean_data, tmp_path, monkeypatch, capsys):
    import os
    import signal

    # a real SIGINT: the command's handler asks the trainer to stop after this step
    code, doc, err = _cli_run_stopped_at_the_first_step(clean_data, tmp_path, monkeypatch, capsys,
                                                        lambda: os.kill(os.getpid(), signal.SIGINT))
    assert code == 130
    check_schema("train-run", doc)
    assert doc["interrupted"] is True and doc["global_step"] == 1 and doc["export"] is None
    assert doc["last_checkpoint"] == str(tmp_path / "out" / "checkpoints" / "last.pt")
    assert load_checkpoint(doc["last_checkpoint"])["kind"] == "interrupted"
    assert "--resume" in err


def test_cli_second_ctrl_c_aborts_with_valid_json(clean_data, tmp_path, monkeypatch, capsys):
    def second_ctrl_c():  # what the handler does when the first has been given already
        raise KeyboardInterrupt

    code, doc, err = _cli_run_stopped_at_the_first_step(clean_data, tmp_path, monkeypatch, capsys, second_ctrl_c)
    assert code == 130
    check_schema("train-run", doc)
    assert doc["interrupted"] is True and doc["aborted"] is True and doc["out"] == str(tmp_path / "out")
    assert doc["last_checkpoint"] is None  # aborted in the first epoch: no checkpoint yet
    assert "aborted" in err
