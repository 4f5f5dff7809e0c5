"""Person names: the one rule for every stage (gallery, collect, clean, train).

:func:`person_name` is the name as facedex stores and shows it: a folder name,
a ``--person`` argument, a name scraped from a web page or typed into the web
page all go through it. :func:`person_key` says when two spellings are the same
person. :func:`safe_name` turns a name into one path component (collect and
clean write folders named after people); the original spelling is kept in
their manifests. The rules of :func:`safe_name`, in order:

1. Unicode NFC normalisation (``"e\\u0301"`` and ``"é"`` give the same folder).
2. Control and format characters are dropped (C0/C1 controls, bidi overrides
   such as U+202E, zero-width spaces, BOMs, private-use and surrogate code
   points) — except ZWNJ/ZWJ (U+200C/U+200D), which some scripts need.
3. Every run of whitespace (any Unicode space, tab, newline) becomes one
   ASCII space; leading and trailing spaces are removed.
4. Characters that are reserved on common file systems — ``/ \\ : * ? " < > |``
   — become ``_``. So a name can never contain a path separator.
5. Leading dots, dashes and spaces and trailing dots and spaces are removed:
   no ``.``/``..``, no hidden folders, nothing a shell tool reads as an
   option, nothing Windows refuses.
6. A name with no letter or digit left (``""``, ``"../"``, ``"***"``) becomes
   ``unnamed-<hash>``; Windows device names (``CON``, ``NUL``, ``COM1``…) get
   a trailing ``_``.
7. A name longer than :data:`MAX_NAME_BYTES` bytes of UTF-8 is cut at a
   character boundary and gets ``-<hash>`` of the full name, so two long
   names that share a beginning stay apart.

Unicode letters are kept as they are (``"Zoë Ångström"`` stays readable).
``<hash>`` is the first 8 hex digits of the SHA-256 of the NFC name, so the
result is deterministic.

:func:`person_key` decides when two spellings are the *same person*:
compatibility forms, case, accents, spacing, underscores and punctuation do
not count, so ``"JEAN  Chrétien"``, ``"jean chretien"`` and ``"Jean_Chrétien"``
(an LFW folder) are one person. Collect gives them one folder (named after the
first spelling seen); ``facedex enroll`` warns when a new name has the key of
a person already enrolled under another spelling. Two different people whose
safe folder names still clash are told apart by :func:`unique_folder`, which
appends ``-<hash>`` of the person key.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from .errors import InvalidNameError

#: Longest folder name, in UTF-8 bytes (file systems allow 255; room is left
#: for a ``-<hash>`` suffix and for tools that add their own).
MAX_NAME_BYTES = 150

_RESERVED_CHARS = '/\\:*?"<>|'
_KEEP_FORMAT = {"\u200c", "\u200d"}  # ZWNJ, ZWJ: part of the spelling in Persian, Indic scripts…
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co"}
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_SPACES = re.compile(r"\s+")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def clean_name(name: str) -> str:
    """The person's name as text to keep: NFC, no control characters, single spaces.

    This is what the manifest records as the person's name (the raw input is
    kept beside it only where it differs)."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        ch for ch in text
        if ch in _KEEP_FORMAT or (unicodedata.category(ch) not in _DROP_CATEGORIES) or ch in "\t\n\r\v\f"
    )
    return _SPACES.sub(" ", text).strip()


#: Longest person name, in characters.
MAX_NAME_CHARS = 200


def person_name(name: str) -> str:
    """The person's name as facedex keeps it (:func:`clean_name`), checked: raises
    :class:`facedex.errors.InvalidNameError` when nothing is left or it is longer
    than :data:`MAX_NAME_CHARS` characters."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a person's name must be text, got {type(name).__name__}")
    cleaned = clean_name(name)
    if not cleaned:
        raise InvalidNameError(f"person name {name!r} is empty once control characters and spaces are removed")
    if len(cleaned) > MAX_NAME_CHARS:
        raise InvalidNameError(f"person name is {len(cleaned)} characters long; the limit is {MAX_NAME_CHARS}")
    return cleaned


def person_key(name: str) -> str:
    """Identity of a person name: spellings with the same key are one person
    (compatibility forms, case, accents, spaces, underscores and punctuation
    do not count: ``"José María_Aznar"`` and ``"jose maria aznar"`` agree)."""
    text = unicodedata.normalize("NFKD", clean_name(name))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    key = "_".join("".join(c if c.isalnum() else " " for c in text).split())
    return key or _SPACES.sub(" ", text).strip()


def safe_name(name: str) -> str:
    """One safe, readable path component for a person's folder (see the module doc)."""
    nfc = unicodedata.normalize("NFC", name)
    text = clean_name(nfc)
    text = "".join("_" if ch in _RESERVED_CHARS else ch for ch in text)
    text = text.lstrip(" .-").rstrip(" .")
    if not any(ch.isalnum() for ch in text):
        return f"unnamed-{_digest(nfc)}"
    stem, dot, rest = text.partition(".")
    if stem.rstrip(" ").upper() in _WINDOWS_DEVICES:  # "CON", "nul.txt" → "CON_", "nul_.txt"
        text = stem.rstrip(" ") + "_" + dot + rest
    if len(text.encode("utf-8")) > MAX_NAME_BYTES:
        cut = text
        while len(cut.encode("utf-8")) > MAX_NAME_BYTES - 9:
            cut = cut[:-1]
        # never end on a lone combining mark's base split or a space/dot
        while cut and unicodedata.combining(cut[-1]):
            cut = cut[:-1]
        text = cut.rstrip(" .") + "-" + _digest(nfc)
    return text


def folder_key(folder: str) -> str:
    """Two folders with the same key collide on a case-insensitive file system."""
    return unicodedata.normalize("NFC", folder).casefold()


def unique_folder(name: str, key: str, taken: set[str]) -> str:
    """``safe_name(name)``, or ``safe_name(name)-<hash of key>`` when that folder is
    already ``taken`` (a set of :func:`folder_key` values) by another person."""
    base = safe_name(name)
    if folder_key(base) not in taken:
        return base
    candidate = f"{base}-{_digest(key)}"
    n = 2
    while folder_key(candidate) in taken:  # astronomically unlikely; stay deterministic anyway
        candidate = f"{base}-{_digest(key + f'#{n}')}"
        n += 1
    return candidate
