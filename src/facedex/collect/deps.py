"""Lazy imports of the optional ``facedex[collect]`` packages.

``urllib3`` (HTTP with streaming, timeouts, connection pools and no automatic
redirects) and ``beautifulsoup4`` (HTML with CSS selectors through
``soupsieve``) are imported only when a collect command runs, so
``import facedex`` never needs them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

_PACKAGES = {"urllib3": "urllib3", "bs4": "beautifulsoup4", "soupsieve": "soupsieve"}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = (err.name or module).split(".")[0]
        if missing not in _PACKAGES and missing != module.split(".")[0]:
            raise  # a broken install of something else: let the real error through
        raise MissingDependencyError(_PACKAGES.get(missing, missing), "collect", "facedex collect") from None
