"""Loopback-only network guard for the collect tests.

Imported automatically by Python (as ``sitecustomize``) in the subprocesses
the tests start with this folder on ``PYTHONPATH``; the in-process tests call
:func:`install` directly. Any ``connect`` to an address outside 127.0.0.0/8
and ::1 is refused and recorded: in the list :data:`VIOLATIONS`, and, when
``FACEDEX_TEST_VIOLATIONS`` names a file, appended to that file so the
parent test can fail on it.
"""

from __future__ import annotations

import ipaddress
import os
import socket

VIOLATIONS: list[str] = []
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = address[0]
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def _refuse(address) -> None:
    text = f"non-loopback connect to {address!r}"
    VIOLATIONS.append(text)
    path = os.environ.get("FACEDEX_TEST_VIOLATIONS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    raise PermissionError(13, "the collect tests allow loopback traffic only", str(address))


def _connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        _refuse(address)
    return _original_connect(self, address)


def _connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        _refuse(address)
    return _original_connect_ex(self, address)


def install() -> None:
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex


def uninstall() -> None:
    socket.socket.connect = _original_connect
    socket.socket.connect_ex = _original_connect_ex


if os.environ.get("FACEDEX_TEST_LOOPBACK_ONLY") == "1":
    install()
