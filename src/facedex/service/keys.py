"""API keys and their scopes.

Keys come from ``FACEDEX_API_KEY`` (one key, scope ``admin``) and from a key
file (``--api-key-file``): one key a line, ``SCOPE KEY [LABEL]``, where SCOPE
is ``read``, ``enroll`` or ``admin``; blank lines and lines starting with
``#`` are ignored. Scopes are ordered: ``enroll`` can do what ``read`` can,
``admin`` everything.

==========  ==============================================================
``read``    identify, verify, list people and thumbnails, the gallery, jobs
``enroll``  + add photos to a person (creates the person)
``admin``   + erase a person, calibrate or set the threshold
==========  ==============================================================

Only a SHA-256 digest of each key is held after loading, and a request's key
is compared with every digest in constant time. A key is never logged: logs
and errors name a key by its label (``FACEDEX_API_KEY``, or the file's label
or ``FILE:LINE``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError
from .errors import ServiceError

SCOPES = ("read", "enroll", "admin")
#: Shortest key accepted: a guessable key is no key.
MIN_KEY_LENGTH = 16
ENV_VAR = "FACEDEX_API_KEY"


@dataclass(frozen=True)
class ApiKey:
    """One key: its digest, scope and a label to name it in logs."""

    digest: bytes
    scope: str
    label: str

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    @property
    def owner(self) -> str:
        """A stable, non-secret id of the key (jobs belong to the key that made them)."""
        return self.digest.hex()[:16]


#: The caller when the service runs without keys (loopback only): may do everything.
ANONYMOUS = ApiKey(b"", "admin", "no key (loopback service without keys)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _check_key(key: str, where: str) -> None:
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where}: the API key is {len(key)} characters long; use at least {MIN_KEY_LENGTH} "
                          "random characters (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not all(33 <= ord(c) < 127 for c in key):
        raise ConfigError(f"{where}: an API key must be printable ASCII without spaces")


class KeyRing:
    """The service's keys (possibly none: then every request is anonymous)."""

    def __init__(self, keys: Iterable[ApiKey] = ()):
        self.keys = tuple(keys)
        seen: set[bytes] = set()
        for k in self.keys:
            if k.digest in seen:
                raise ConfigError(f"{k.label}: the same API key is given twice")
            seen.add(k.digest)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def load(cls, file: str | os.PathLike | None = None, env: dict | None = None) -> "KeyRing":
        """Keys from ``$FACEDEX_API_KEY`` (scope admin) and ``file`` (see the module doc)."""
        env = os.environ if env is None else env
        keys: list[ApiKey] = []
        value = env.get(ENV_VAR, "").strip()
        if value:
            _check_key(value, ENV_VAR)
            keys.append(ApiKey(_digest(value), "admin", ENV_VAR))
        if file is not None:
            keys += read_key_file(file)
        return cls(keys)

    def check(self, authorization: str | None) -> ApiKey:
        """The key of an ``Authorization`` header value; 401 when missing or unknown."""
        if not self.enabled:
            return ANONYMOUS
        challenge = {"WWW-Authenticate": 'Bearer realm="facedex"'}
        if not authorization:
            raise ServiceError(401, "auth.missing_key", "this service needs an API key: send "
                               "'Authorization: Bearer KEY'", challenge)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ServiceError(401, "auth.missing_key", "give the key as 'Authorization: Bearer KEY'", challenge)
        presented = _digest(token)
        found = None
        for k in self.keys:  # every key is compared, in constant time
            if hmac.compare_digest(presented, k.digest):
                found = k
        if found is None:
            raise ServiceError(401, "auth.invalid_key", "the API key is not valid for this service", challenge)
        return found


def require(key: ApiKey, scope: str) -> None:
    """403 unless ``key`` has ``scope`` (or a higher one)."""
    if not key.allows(scope):
        raise ServiceError(403, "auth.scope", f"this needs a key with scope {scope!r} "
                           f"(or higher: {', '.join(SCOPES[SCOPES.index(scope) + 1:]) or 'none'}); "
                           f"the key given has scope {key.scope!r}")


def read_key_file(path: str | os.PathLike) -> list[ApiKey]:
    """Keys of a key file: ``SCOPE KEY [LABEL]`` a line."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{p}: cannot read the API key file ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the API key file is not UTF-8 text") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        import logging

        logging.getLogger(__name__).warning("%s: the API key file can be read by other users; chmod 600 it", p)
    keys: list[ApiKey] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        where = f"{p}:{n}"
        if len(parts) < 2:
            raise ConfigError(f"{where}: expected 'SCOPE KEY [LABEL]' (SCOPE one of {', '.join(SCOPES)})")
        scope, key = parts[0].lower(), parts[1]
        if scope not in SCOPES:
            raise ConfigError(f"{where}: unknown scope {parts[0]!r}; scopes are {', '.join(SCOPES)}")
        _check_key(key, where)
        label = parts[2].strip() if len(parts) > 2 else where
        keys.append(ApiKey(_digest(key), scope, label))
    if not keys:
        raise ConfigError(f"{p}: the API key file holds no key (lines are 'SCOPE KEY [LABEL]')")
    return keys
