"""robots.txt as specified by RFC 9309 (the Robots Exclusion Protocol).

Why not :mod:`urllib.robotparser`: it applies the *first* matching rule in
file order instead of the *longest* match, and it does not understand the
``*`` and ``$`` wildcards that RFC 9309 (and every major crawler) supports;
a ``Disallow: /*.jpg$`` would be ignored and images fetched against the
site's wishes. This module is small and follows the RFC:

* groups start with one or more ``User-agent`` lines; the group(s) whose
  token is contained in our product token (case-insensitive) apply, the
  longest such token wins; otherwise the ``*`` group(s); otherwise nothing
  is disallowed;
* within the groups, the rule whose path pattern is longest wins; on a tie
  ``Allow`` wins; ``*`` matches any characters and a final ``$`` anchors;
* ``/robots.txt`` itself is always allowed;
* ``Crawl-delay`` (not in the RFC, but widely used) is read and honoured by
  the fetcher as a minimum interval between requests to the host.

What a fetch of robots.txt means (:meth:`RobotsRules.from_response`):
2xx → the rules; 401/403 → everything disallowed (as Python's parser and
most crawlers do; the RFC would allow); other 4xx (404, 410…) → no rules;
5xx, 429, network errors or a redirect off the allowed hosts → the file is
unreachable and, as the RFC requires, everything is disallowed for this run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .urlnorm import _PATH_SAFE, _normalize_component

#: Bytes of robots.txt that are parsed (RFC 9309 asks for at least 500 KiB).
MAX_ROBOTS_BYTES = 512 * 1024

_SAFE_WITH_WILDCARDS = _PATH_SAFE | frozenset("*$?")


@dataclass(frozen=True)
class _Rule:
    allow: bool
    pattern: str
    regex: re.Pattern

    @classmethod
    def make(cls, allow: bool, raw: str) -> "_Rule":
        pattern = _normalize_component(raw, _SAFE_WITH_WILDCARDS)
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        rx = ".*".join(re.escape(part) for part in body.split("*"))
        return cls(allow, pattern, re.compile(rx + (r"\Z" if anchored else ""), re.DOTALL))


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[_Rule] = field(default_factory=list)
    crawl_delay: float | None = None


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one robots.txt for one user agent."""

    rules: tuple[_Rule, ...] = ()
    disallow_all: bool = False
    crawl_delay: float | None = None
    note: str = ""
    unreachable: str = ""        #: why the file could not be fetched (5xx, 429, network): nothing is allowed

    @classmethod
    def allow_everything(cls, note: str = "") -> "RobotsRules":
        return cls(note=note)

    @classmethod
    def deny_everything(cls, note: str, unreachable: str = "") -> "RobotsRules":
        return cls(disallow_all=True, note=note, unreachable=unreachable)

    @classmethod
    def parse(cls, text: str, user_agent: str) -> "RobotsRules":
        token = product_token(user_agent)
        groups: list[_Group] = []
        current: _Group | None = None
        in_agents = False
        for raw_line in text.splitlines():
            line = raw_line.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key in ("user-agent", "useragent"):
                if not in_agents or current is None:
                    current = _Group()
                    groups.append(current)
                current.agents.append(value.lower())
                in_agents = True
                continue
            if current is None:
                continue  # rules before any user-agent line apply to no one
            in_agents = False
            if key in ("allow", "disallow"):
                if value:  # an empty Disallow disallows nothing
                    current.rules.append(_Rule.make(key == "allow", value))
            elif key in ("crawl-delay", "crawldelay"):
                try:
                    delay = float(value)
                except ValueError:
                    continue
                if delay >= 0:
                    current.crawl_delay = delay
        chosen = _select(groups, token)
        rules = tuple(r for g in chosen for r in g.rules)
        delays = [g.crawl_delay for g in chosen if g.crawl_delay is not None]
        return cls(rules=rules, crawl_delay=max(delays) if delays else None)

    def allowed(self, path_query: str) -> bool:
        """May ``path_query`` (a normalised path with its query) be fetched?"""
        if path_query == "/robots.txt":
            return True
        if self.disallow_all:
            return False
        best: _Rule | None = None
        for rule in self.rules:
            if rule.regex.match(path_query):
                if best is None or len(rule.pattern) > len(best.pattern) or (
                    len(rule.pattern) == len(best.pattern) and rule.allow and not best.allow
                ):
                    best = rule
        return best is None or best.allow


def product_token(user_agent: str) -> str:
    """``"facedex-collect/0.1 (+url)"`` → ``"facedex-collect"``."""
    return user_agent.strip().split("/", 1)[0].split(" ", 1)[0].lower()


def _select(groups: list[_Group], token: str) -> list[_Group]:
    best_len, chosen = 0, []
    for g in groups:
        for agent in g.agents:
            if agent != "*" and agent and agent in token:
                if len(agent) > best_len:
                    best_len, chosen = len(agent), [g]
                elif len(agent) == best_len and g not in chosen:
                    chosen.append(g)
    if chosen:
        return chosen
    return [g for g in groups if "*" in g.agents]
