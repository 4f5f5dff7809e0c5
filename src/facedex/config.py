"""Paths, limits and environment variables, read in this one place.

Environment variables (all optional):

``FACEDEX_CACHE_DIR``
    Where prepared model files are cached. Default: ``$XDG_CACHE_HOME/facedex``
    or ``~/.cache/facedex``.
``FACEDEX_MAX_PIXELS``
    Largest image (width x height) that will be decoded. Default 100 million.
``FACEDEX_RUNTIME``
    Inference runtime for the models: ``auto`` (default: each model runs on the
    runtime measured fastest for it on this machine, measured once and cached
    beside the prepared model), ``onnxruntime``, ``opencv``, ``openvino`` or
    ``openvino-bf16``.
``FACEDEX_PRECISION``
    ``fp32`` (default): every model computes in float32. ``bf16``: the ``auto``
    runtime may also run a model in bfloat16 where its card lists bf16 as
    verified (SFace) and the CPU computes bf16 natively (AVX-512 BF16, AMX):
    about 1.6x faster embeddings, not bit-identical answers (docs/speed.md).
``FACEDEX_THREADS``
    Threads per inference session. Default: the number of CPUs.
``FACEDEX_DECODE_TIMEOUT``
    Seconds one image may take to decode before it is reported as an error and
    the batch moves on. Default 60.
``FACEDEX_BUSY_TIMEOUT``
    Seconds a gallery write waits for another program that holds the gallery.
    Default 30.
``FACEDEX_DATA_DIR``
    Where fetched datasets go (``facedex data fetch``). Default: ``data/`` in
    the cache folder.
``FACEDEX_LFW``
    An existing LFW ``lfw/`` folder, looked at before ``../shared/data/lfw``
    and the data folder.
``FACEDEX_VIDEO_DECODER``
    Which decoder reads videos: ``auto`` (default: PyAV when the ``video``
    extra is installed, else OpenCV), ``pyav`` or ``opencv``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

#: Largest number of pixels an image may have before it is refused undecoded.
#: 100 MP admits every consumer camera (the largest are ~60 MP) and refuses the
#: classic decompression bombs (a 30000x30000 PNG is 900 MP).
DEFAULT_MAX_PIXELS = 100_000_000


def cache_dir() -> Path:
    """Directory for prepared (converted, verified) model files."""
    env = os.environ.get("FACEDEX_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facedex"


def _int_env(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def max_pixels() -> int:
    return _int_env("FACEDEX_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def runtime_name() -> str:
    """``$FACEDEX_RUNTIME``, default ``auto`` (checked where it is used: :mod:`facedex.models`)."""
    return os.environ.get("FACEDEX_RUNTIME", "").strip() or "auto"


PRECISIONS = ("fp32", "bf16")


def precision() -> str:
    """``$FACEDEX_PRECISION``: ``fp32`` (default) or ``bf16``."""
    value = os.environ.get("FACEDEX_PRECISION", "").strip().lower() or "fp32"
    if value not in PRECISIONS:
        raise ConfigError(f"FACEDEX_PRECISION={value!r}: use one of {', '.join(PRECISIONS)}")
    return value


def threads() -> int:
    return _int_env("FACEDEX_THREADS", os.cpu_count() or 1)


def data_dir() -> Path:
    """Folder that fetched datasets go to: ``$FACEDEX_DATA_DIR``, else ``data/``
    in the facedex cache folder (``~/.cache/facedex/data``)."""
    env = os.environ.get("FACEDEX_DATA_DIR", "").strip()
    return Path(env).expanduser() if env else cache_dir() / "data"


def lfw_env() -> Path | None:
    """``$FACEDEX_LFW`` as a path, or None when unset."""
    env = os.environ.get("FACEDEX_LFW", "").strip()
    return Path(env).expanduser() if env else None


def _float_env(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def decode_timeout() -> float:
    return _float_env("FACEDEX_DECODE_TIMEOUT", 60.0, 0.01)


def busy_timeout() -> float:
    return _float_env("FACEDEX_BUSY_TIMEOUT", 30.0, 0.0)


VIDEO_DECODERS = ("auto", "pyav", "opencv")


def video_decoder() -> str:
    """``$FACEDEX_VIDEO_DECODER``: ``auto`` (default), ``pyav`` or ``opencv``."""
    value = os.environ.get("FACEDEX_VIDEO_DECODER", "").strip().lower() or "auto"
    if value not in VIDEO_DECODERS:
        raise ConfigError(f"FACEDEX_VIDEO_DECODER={value!r}: use one of {', '.join(VIDEO_DECODERS)}")
    return value
