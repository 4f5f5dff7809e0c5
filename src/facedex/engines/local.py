"""The default search backend: faiss in this process (exact search, or the
approximate index kept beside the gallery; see :mod:`facedex.gallery.index`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..identify.gallery import Gallery


def configure(gallery: "Gallery", **options: Any) -> dict[str, Any]:
    if options:
        raise ConfigError(f"the faiss backend takes no options (got {', '.join(sorted(options))}); "
                          "its index is chosen with Gallery.open(index=…)")
    return {"engine": "faiss"}


def open(gallery: "Gallery", config: dict[str, Any]):  # noqa: A001 - the engine protocol's name
    raise ConfigError("the faiss backend is built into Gallery; it is not opened as a remote searcher")


def retire(gallery: "Gallery", config: dict[str, Any]) -> None:
    """The gallery now searches elsewhere: the index file beside it would no
    longer follow ``forget``, so it goes."""
    import contextlib
    import os

    from ..gallery.index import index_path

    with contextlib.suppress(FileNotFoundError):
        os.unlink(index_path(gallery.path))
