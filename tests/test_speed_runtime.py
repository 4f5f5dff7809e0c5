"""Runtimes and the fast path (issue #15): the same embeddings on every runtime,
``auto`` measures once and caches its choice, an unavailable runtime is a clear
error, and decoding ahead / batching across photos do not change any answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import facedex
from facedex import config, models
from facedex.errors import ConfigError, ModelError, UnknownNameError
from facedex.faces.detect import central_face
from facedex.media import load_image
from facedex.pipeline import FacePipeline

from .conftest import KNOWN, lfw_image, lfw_images, strangers

AVAILABLE = [n for n, rt in models.RUNTIMES.items() if rt.unavailable() is None]


@pytest.fixture(scope="module")
def lfw_crops():
    """Aligned crops of the central face of 24 LFW photos (landmarks from onnxruntime)."""
    pipe = FacePipeline(runtime="onnxruntime")
    crops = []
    for person in KNOWN:
        for path in lfw_images(person)[9:12]:
            rgb = load_image(path)
            face = central_face(pipe.detector.detect(rgb), rgb.shape[1], rgb.shape[0])
            crops.append(pipe.embedder.align(rgb, face))
    return crops


@pytest.mark.parametrize("runtime", [r for r in AVAILABLE if r != "onnxruntime"])
def test_runtimes_give_the_same_embeddings_on_real_faces(lfw_crops, runtime):
    ref = FacePipeline(runtime="onnxruntime").embedder.embed_crops(lfw_crops)
    got = FacePipeline(runtime=runtime).embedder.embed_crops(lfw_crops)
    cos = (ref * got).sum(1)
    if models.RUNTIMES[runtime].precision == "fp32":
        assert cos.min() > 0.99999, cos.min()
        assert np.abs(ref - got).max() < 1e-3
    else:  # bf16: measured cosine >= 0.9996 on 2,000 LFW faces (bench/runtime_accuracy.py)
        assert cos.min() > 0.999, cos.min()
    # the same person stays the closest: the ranking of every pair is kept
    assert np.array_equal(np.argsort(-(ref @ ref.T), 1)[:, :3], np.argsort(-(got @ got.T), 1)[:, :3])


def test_a_detector_not_verified_in_bf16_runs_in_fp32(caplog):
    if "openvino-bf16" not in AVAILABLE:
        pytest.skip("this machine cannot run bf16")
    images = [load_image(lfw_image("Colin_Powell", 10))]
    with caplog.at_level("WARNING", logger="facedex.models"):
        got = FacePipeline(runtime="openvino-bf16").detector.detect_batch(images)
    assert "not verified in bf16" in caplog.text or models._warned
    ref = FacePipeline(runtime="openvino").detector.detect_batch(images)
    assert [f.box for f in got[0]] == [f.box for f in ref[0]]


@pytest.mark.parametrize("runtime", [r for r in AVAILABLE if models.RUNTIMES[r].precision == "fp32"])
def test_fp32_runtimes_find_the_same_faces(runtime):
    images = [load_image(lfw_image("Colin_Powell", 10)), load_image(lfw_image("Tony_Blair", 1))]
    ref = FacePipeline(runtime="onnxruntime").detector.detect_batch(images)
    got = FacePipeline(runtime=runtime).detector.detect_batch(images)
    for a, b in zip(ref, got):
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            assert np.abs(np.subtract(fa.box, fb.box)).max() < 0.5
            assert np.abs(fa.landmarks_array() - fb.landmarks_array()).max() < 0.5


# --- names, availability, precision -------------------------------------------------------------------
def test_unknown_runtime_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        models.runner_for(models.get_card("yunet-2023mar"), "tensorrt")
    for name in ("auto", "onnxruntime", "opencv", "openvino", "openvino-bf16"):
        assert name in str(info.value)


def test_unavailable_runtime_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(models, "_has_package", lambda module: module != "openvino")
    for name in ("openvino", "openvino-bf16"):
        with pytest.raises(ModelError, match=r"not available here: needs the openvino package.*pip install openvino"):
            models.get_runtime(name)
        with pytest.raises(ModelError, match="not available"):
            models.runner_for(models.get_card("yunet-2023mar"), name)


def test_bf16_needs_a_cpu_that_has_it(monkeypatch):
    if "openvino" not in AVAILABLE:
        pytest.skip("openvino is not installed")

    class NoBf16:
        def get_property(self, device, name):
            return ["FP32", "INT8"]

    monkeypatch.setattr(models, "_openvino_core", lambda: NoBf16())
    with pytest.raises(ModelError, match="no native bf16"):
        models.get_runtime("openvino-bf16")


def test_precision_setting(monkeypatch):
    sface, yunet = models.get_card("sface-2021dec"), models.get_card("yunet-2023mar")
    monkeypatch.delenv("FACEDEX_PRECISION", raising=False)
    assert config.precision() == "fp32"  # bf16 answers are close, not the same: opt in
    assert models.precisions_allowed(sface) == ("fp32",)
    monkeypatch.setenv("FACEDEX_PRECISION", "bf16")
    assert models.precisions_allowed(sface) == ("fp32", "bf16")  # verified: docs/speed.md
    assert models.precisions_allowed(yunet) == ("fp32",)  # moves landmarks: never in bf16
    assert models.precisions_allowed(None) == ("fp32",)  # a model file without a card
    monkeypatch.setenv("FACEDEX_PRECISION", "fp16")
    with pytest.raises(ConfigError, match="FACEDEX_PRECISION"):
        config.precision()


# --- auto ---------------------------------------------------------------------------------------------
@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(models, "AUTO_BUDGET_S", 0.05)
    models._openvino_core.cache_clear()
    yield tmp_path
    models._openvino_core.cache_clear()


def test_bf16_is_a_candidate_only_when_asked_for(tmp_path, monkeypatch):
    if "openvino-bf16" not in AVAILABLE:
        pytest.skip("this machine cannot run bf16")
    card = models.get_card("sface-2021dec")
    real = models.prepared_path(card)  # the shared cache's copy, verified
    monkeypatch.setattr(models, "_time_candidates",
                        lambda runners, probes, budget: {n: [1.0 / (i + 1)] * 2 for i, n in enumerate(runners)})
    own_cache = tmp_path
    monkeypatch.setenv("FACEDEX_CACHE_DIR", str(own_cache))
    (own_cache / "models").mkdir()
    for f in (real, real.with_suffix(".json")):
        (own_cache / "models" / f.name).write_bytes(f.read_bytes())
    path = models.prepared_path(card)
    assert models.choose_runtime(card, path) == "openvino"  # the last fp32 candidate (fastest here)
    monkeypatch.setenv("FACEDEX_PRECISION", "bf16")
    assert models.choose_runtime(card, path) == "openvino-bf16"
    bf16_file = models.auto_path(path, card)
    monkeypatch.setenv("FACEDEX_PRECISION", "fp32")
    assert models.auto_path(path, card).is_file() and bf16_file.is_file() and bf16_file != models.auto_path(path, card)
    assert models.runtime_choice(card)["choice"] == "openvino"  # each setting keeps its own choice


def test_auto_measures_once_caches_and_says_so(own_cache, monkeypatch, caplog):
    card = models.get_card("yunet-2023mar")
    path = models.prepared_path(card)
    caplog.set_level("INFO", logger="facedex.models")
    choice = models.choose_runtime(card, path)
    assert choice in AVAILABLE and models.RUNTIMES[choice].precision == "fp32"
    rec = json.loads(models.auto_path(path).read_text())
    assert rec["choice"] == choice and set(rec["items_per_s"]) <= set(models.AUTO_CANDIDATES)
    assert "onnxruntime" in rec["items_per_s"] and rec["fingerprint"]["threads"] == config.threads()
    assert f"runs on {choice}" in caplog.text

    # cached: a second process-wide choice does not measure again
    def no_measuring(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(models, "_time_candidates", no_measuring)
    caplog.clear()
    assert models.choose_runtime(card, path) == choice
    assert "cached in" in caplog.text
    assert models.runtime_choice(card)["choice"] == choice

    # another thread count is another setting: measured again, and kept apart (a program with
    # FACEDEX_THREADS=1 sharing the cache does not make the others measure again in turn)
    monkeypatch.setenv("FACEDEX_THREADS", "1")
    assert models.runtime_choice(card) is None
    with pytest.raises(AssertionError, match="measured again"):
        models.choose_runtime(card, path)
    monkeypatch.delenv("FACEDEX_THREADS")
    assert models.choose_runtime(card, path) == choice


def test_auto_prefers_the_first_candidate_unless_clearly_faster(own_cache, monkeypatch):
    card = models.get_card("yunet-2023mar")
    path = models.prepared_path(card)
    fake = {"onnxruntime": [1.0, 1.0], "opencv": [0.95, 0.95], "openvino": [0.5, 2.0]}

    def timed(runners, probes, budget):
        return {n: fake.get(n, [9.0, 9.0]) for n in runners}

    monkeypatch.setattr(models, "_time_candidates", timed)
    # opencv only 5 % faster; openvino 2x faster on one probe, 2x slower on the other: keep onnxruntime
    assert models.choose_runtime(card, path, remeasure=True) == "onnxruntime"
    fake["opencv"] = [0.5, 0.5]
    assert models.choose_runtime(card, path, remeasure=True) == "opencv"


def test_auto_skips_unavailable_runtimes(own_cache, monkeypatch):
    monkeypatch.setattr(models, "_has_package", lambda module: module != "openvino")
    card = models.get_card("yunet-2023mar")
    path = models.prepared_path(card)
    assert models.choose_runtime(card, path, remeasure=True) in ("onnxruntime", "opencv")
    rec = models.runtime_choice(card)
    assert "pip install openvino" in rec["excluded"]["openvino"]


def test_models_command_shows_the_choice(own_cache):
    env = dict(os.environ, FACEDEX_CACHE_DIR=str(own_cache))
    env.pop("FACEDEX_RUNTIME", None)
    cmd = [sys.executable, "-m", "facedex", "models"]
    before = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    assert "auto: not measured yet" in before
    subprocess.run(cmd + ["--prepare"], capture_output=True, text=True, env=env, check=True)
    doc = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, check=True).stdout)
    runtimes = {m["name"]: m["runtime"] for m in doc["models"]}
    assert runtimes["yunet-2023mar"]["runtime"] in AVAILABLE
    assert runtimes["sface-2021dec"]["runtime"] in AVAILABLE
    assert runtimes["dlib-resnet-v1"]["runtime"] == "dlib"
    text = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    assert f"{runtimes['sface-2021dec']['runtime']} (auto)" in text and "auto measured" in text
    forced = subprocess.run([sys.executable, "-m", "facedex", "--runtime", "opencv", "models"], capture_output=True,
                            text=True, env=env, check=True).stdout
    assert "sface-2021dec   embedder  128  fb143eea07838aa5  opencv" in forced


def test_openvino_sends_nothing_and_writes_nothing_home(tmp_path):
    if "openvino" not in AVAILABLE:
        pytest.skip("openvino is not installed")
    home = tmp_path / "home"
    home.mkdir()
    code = ("import sys; from facedex import models; "
            "r = models.runner_for(models.get_card('sface-2021dec'), 'openvino'); "
            "import numpy as np; r(np.zeros((1, 3, 112, 112), np.float32)); "
            "print(sorted(m for m in sys.modules if 'telemetry' in m or m.startswith('openvino.tools')))")
    env = dict(os.environ, HOME=str(home), FACEDEX_CACHE_DIR=str(config.cache_dir()))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
    assert list(home.iterdir()) == []  # openvino-telemetry would write ~/intel/openvino_ga_cid


# --- identify_paths: decoding ahead and batching across photos change nothing ----------------------------
@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    (d / "broken.jpg").write_bytes(lfw_image("Tony_Blair", 12).read_bytes()[:300])
    (d / "notes.jpg").write_text("not an image")
    frames = [Image.open(lfw_image(p, 12)) for p in ("Colin_Powell", "Hugo_Chavez")]
    frames[0].save(d / "two.gif", save_all=True, append_images=frames[1:], duration=400, loop=0)
    photos = [lfw_images(p)[12] for p in KNOWN] + strangers(6) + [lfw_image("Colin_Powell", 10)]
    return photos[:5] + [d / "broken.jpg"] + photos[5:9] + [d / "two.gif", d / "notes.jpg", d / "missing.jpg"] \
        + photos[9:]


def _answers(results):
    return [r.to_dict() for r in results]


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_identify_paths_gives_the_same_results_with_and_without_decoding_ahead(base_gallery, mixed_inputs,
                                                                               batch_size):
    with facedex.Gallery.open(base_gallery) as g:
        ahead = _answers(facedex.identify_paths(g, mixed_inputs, batch_size=batch_size))
        plain = _answers(facedex.identify_paths(g, mixed_inputs, batch_size=batch_size, prefetch=False))
    assert ahead == plain
    assert [r["input"] for r in ahead] == [str(p) for p in mixed_inputs]
    assert sum(r["error"] is not None for r in ahead) == 3


def test_decoding_ahead_keeps_to_the_pixel_budget(base_gallery, mixed_inputs, monkeypatch):
    import facedex.identify.run as run_mod

    budget = 150_000  # about two LFW photos
    monkeypatch.setattr(run_mod, "PIXEL_BUDGET", budget)
    held_at_start, batches = [], []
    real_open, real_photos = run_mod.IdentifyRun._open, run_mod.IdentifyRun._photos

    def opening(self, inp):
        held_at_start.append(self._held + self._ahead)  # decoded and not yet released
        return real_open(self, inp)

    def photos(self, batch):
        batches.append(sum(isinstance(p, run_mod.Photo) for p in batch))
        return real_photos(self, batch)

    monkeypatch.setattr(run_mod.IdentifyRun, "_open", opening)
    monkeypatch.setattr(run_mod.IdentifyRun, "_photos", photos)
    with facedex.Gallery.open(base_gallery) as g:
        ahead = _answers(facedex.identify_paths(g, mixed_inputs))
        plain = _answers(facedex.identify_paths(g, mixed_inputs, prefetch=False))
    assert ahead == plain
    assert max(held_at_start) < budget  # a decode starts only while what is held is under the budget
    assert max(batches) == 3  # batches were cut by pixels (3 LFW photos), not by count (16)


def test_batching_across_photos_gives_each_photo_its_own_answers(base_gallery, mixed_inputs):
    photos = [p for p in mixed_inputs if p.suffix == ".jpg" and p.exists() and p.stat().st_size > 1000]
    with facedex.Gallery.open(base_gallery) as g:
        together = list(facedex.identify_paths(g, photos))
        for res, path in zip(together, photos):
            alone = g.identify(path)
            assert [f.name for f in res.faces] == [i.name for i in alone]
            assert np.allclose([f.similarity for f in res.faces], [i.similarity for i in alone], atol=2e-3)
            assert [f.face.box for f in res.faces] == [i.face.box for i in alone]
    assert sum(f.name is not None for r in together for f in r.faces) >= len(KNOWN)


def test_stopping_early_stops_the_decoding_thread(base_gallery, mixed_inputs):
    import threading
    import time

    with facedex.Gallery.open(base_gallery) as g:
        run = facedex.identify_paths(g, mixed_inputs * 3, batch_size=2)
        next(run)
        run.close()
    deadline = time.time() + 5
    while time.time() < deadline and any(t.name == "facedex-identify-open" for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(t.name == "facedex-identify-open" for t in threading.enumerate())
