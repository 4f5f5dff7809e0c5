"""Model registry, pinned digests, prepared (converted) files and runtimes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from facedex import models
from facedex.errors import ModelError, ModelIntegrityError, UnknownNameError


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError) as info:
        models.get_card("arcface-r100")
    assert "sface-2021dec" in str(info.value) and "yunet-2023mar" in str(info.value)
    with pytest.raises(UnknownNameError, match="runtime"):
        models.make_runner(models.prepared_path(models.get_card("sface-2021dec")), "tensorrt")
    with pytest.raises(UnknownNameError, match="embedder"):
        models.get_card("yunet-2023mar", "embedder")


def test_import_loads_no_model_and_no_runtime():
    code = ("import sys, facedex; import facedex.identify.gallery, facedex.cli.main; "
            "print(any(m in sys.modules for m in ('onnxruntime', 'onnx', 'faiss')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["yunet-2023mar", "sface-2021dec"])
def test_prepared_model_is_cached_verified_and_matches_the_source(name):
    card = models.get_card(name)
    path = models.prepared_path(card)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["source_sha256"] == card.sha256
    assert meta["sha256"] == models.sha256_file(path)
    assert meta["max_abs_diff_vs_source"] < 1e-4
    mtime = path.stat().st_mtime_ns
    assert models.prepared_path(card) == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEX_CACHE_DIR", str(tmp_path))
    card = models.get_card("yunet-2023mar")
    path = models.prepared_path(card)
    good = path.read_bytes()
    path.write_bytes(good[:1000])  # a half-written or damaged file
    again = models.prepared_path(card)
    assert again.read_bytes() == good


def test_source_with_wrong_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEX_CACHE_DIR", str(tmp_path / "cache"))
    src = models.source_path(models.get_card("yunet-2023mar"))
    tampered = tmp_path / "yunet.onnx"
    data = bytearray(src.read_bytes())
    data[-10] ^= 0xFF
    tampered.write_bytes(bytes(data))
    card = dataclasses.replace(models.get_card("yunet-2023mar"), name="tampered", source=str(tampered))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        models.prepared_path(card)


def test_missing_package_file_says_what_to_install():
    card = dataclasses.replace(models.get_card("sface-2021dec"), source="pypi:no-such-dist/x.onnx")
    with pytest.raises(ModelError, match="pip install no-such-dist"):
        models.source_path(card)


def test_batched_embedding_equals_one_at_a_time_on_both_runtimes():
    card = models.get_card("sface-2021dec")
    path = models.prepared_path(card)
    x = np.random.default_rng(0).uniform(0, 255, (5, 3, 112, 112)).astype(np.float32)
    ort = models.make_runner(path, "onnxruntime")
    batched = ort(x)[0]
    single = np.concatenate([ort(x[i : i + 1])[0] for i in range(5)])
    assert batched.shape == (5, 128)
    assert np.allclose(batched, single, atol=1e-4)
    cv = models.make_runner(path, "opencv")
    assert np.allclose(cv(x)[0], batched, atol=1e-3)


def test_card_round_trips_through_json(tmp_path):
    card = models.get_card("sface-2021dec")
    src = models.source_path(card)
    shutil.copy(src, tmp_path / "model.onnx")
    d = dict(card.to_dict(), name="my-export", source="model.onnx")
    (tmp_path / "model.card.json").write_text(json.dumps(d))
    loaded = models.load_card(tmp_path / "model.onnx")
    assert loaded.name == "my-export" and loaded.template == card.template
    assert loaded.source == str((tmp_path / "model.onnx").resolve())
    assert models.resolve_card(str(tmp_path / "model.card.json"), "embedder") == loaded
    with pytest.raises(ModelError, match="no model card"):
        models.load_card(tmp_path / "other.onnx")
