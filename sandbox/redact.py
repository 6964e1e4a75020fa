"""Secrets out of untrusted text: the last net behind the sandbox, not the fix.

A candidate's text (exception messages, check messages, tracebacks, printed output, answers, reasons)
is data from an adversary. The real defence is that candidate code cannot read a secret at all (the
sandbox: allow-list mounts, scrubbed environment, own /proc). This module is what still stands when
that defence has a hole: every place where such text is recorded, shown, stored in memory or put in a
prompt passes it through `redact`, so that a key the candidate managed to read does not travel on to
the run directory, the memory, the TUI or the model endpoint.

What counts as a secret:
- the values of this process's environment variables whose names look secret (KEY, TOKEN, SECRET, …),
- values registered with `register_secret` (the agent registers every configured model API key),
- common secret shapes (`sk-…`, `api_key = …`, PEM private keys, GitHub/AWS/Hugging Face tokens,
  bearer tokens) whatever their origin.

A known value is also found reversed, in hex and in base64 (at every byte alignment, so inside the
encoding of a longer text too), and as a fragment of at least `FRAGMENT_CHARS` characters at either
end, which is what truncation upstream of a choke point leaves of a secret cut in two. Values shorter
than `MIN_SECRET_CHARS` are ignored ("1", "true"). The patterns are compiled once per set of secrets
and cached; registering a secret or a change of the environment recompiles them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIN_SECRET_CHARS = 8
FRAGMENT_CHARS = 12
"""A prefix or suffix of a known secret this long is redacted too (the rest of it was cut off)."""
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)


@dataclass(frozen=True)
class _Shape:
    """A secret's shape: `triggers` are lower-case strings one of which any match contains (a cheap test
    that spares most texts the regex); a group named `v` is the part replaced, else the whole match."""

    name: str
    triggers: tuple[str, ...]
    regex: re.Pattern[str]

    def sub(self, text: str) -> str:
        def replace(m: re.Match[str]) -> str:
            keep = m.start("v") - m.start() if "v" in self.regex.groupindex else 0
            return m.group(0)[:keep] + f"[REDACTED:{self.name}]"

        return self.regex.sub(replace, text)


_VALUE = r"(?P<v>(?!\[REDACTED)"
_SHAPES = [
    _Shape(
        "private-key",
        ("private key",),
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\s\\]*(?:-----END [A-Z ]*PRIVATE KEY-----)?"
        ),
    ),
    _Shape("sk-key", ("sk-",), re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}")),
    _Shape(
        "github-token",
        ("gh", "github_pat_"),
        re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ),
    _Shape("aws-key", ("akia",), re.compile(r"AKIA[0-9A-Z]{16}\b")),
    _Shape("hf-token", ("hf_",), re.compile(r"hf_[A-Za-z0-9]{20,}")),
    _Shape("slack-token", ("xox",), re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),
    _Shape("bearer", ("bearer",), re.compile(r"(?i:\bbearer\s+)" + _VALUE + r"[A-Za-z0-9._~+/=-]{8,})")),
    _Shape(
        "assigned-secret",
        ("key", "token", "secret", "passw"),
        re.compile(
            r"(?i:\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret"
            r"|password|passwd)[\"']?\s*[=:]\s*[\"']?)" + _VALUE + r"[^\s\"',;{}]{8,})"
        ),
    ),
]

_lock = threading.Lock()
_registered: dict[str, str] = {}
"""Explicitly registered secret values → their names."""
_compiled: tuple[dict[str, str], _Known | None] | None = None
"""The secrets the cached regex was built for, and what was built."""


def register_secret(value: str | None, name: str) -> None:
    """Redact `value` (as `[REDACTED:<name>]`) wherever it appears from now on; short values are ignored."""
    if value is None or len(value.strip()) < MIN_SECRET_CHARS:
        return
    with _lock:
        if _registered.get(value) != name:
            _registered[value] = name


def env_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values of secret-looking variables (value → name), `os.environ` by default."""
    if env is None:
        return _os_env_secrets()
    return {
        value: name
        for name, value in reversed(list(env.items()))
        if len(value.strip()) >= MIN_SECRET_CHARS and SECRET_NAME.search(name)
    }


_name_looks_secret: dict[bytes, bool] = {}


def _os_env_secrets() -> dict[str, str]:
    """`env_secrets(os.environ)` at a few microseconds: it runs for every redacted text, and decoding the
    whole environment would cost more than the redaction itself."""
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return env_secrets(dict(os.environ))
    out: dict[str, str] = {}
    for name, value in data.items():
        looks = _name_looks_secret.get(name)
        if looks is None:
            text = os.fsdecode(name) if isinstance(name, bytes) else str(name)
            looks = _name_looks_secret[name] = bool(SECRET_NAME.search(text))
        if looks and len(value) >= MIN_SECRET_CHARS:
            decoded = os.fsdecode(value) if isinstance(value, bytes) else str(value)
            if len(decoded.strip()) >= MIN_SECRET_CHARS:
                out.setdefault(decoded, os.fsdecode(name) if isinstance(name, bytes) else str(name))
    return out


def _holds_no_secret(value: str) -> bool:
    """A variable naming an existing absolute path (SSH_AUTH_SOCK, a credentials file) holds no secret
    itself: redacting it would only mangle paths in tracebacks."""
    return value.startswith("/") and os.path.exists(value)


def known_secrets() -> dict[str, str]:
    """Every value currently redacted by value (registered and from the environment) → its name."""
    with _lock:
        registered = dict(_registered)
    return env_secrets() | registered


def _b64_middles(secret: bytes) -> set[str]:
    """The base64 characters that depend on `secret` alone, at each of the three byte alignments it can
    have inside a longer encoded text (the edge characters also carry neighbouring bytes)."""
    out: set[str] = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + secret).decode()
        middle = encoded[math.ceil(8 * k / 6) : (8 * (k + len(secret))) // 6]
        if len(middle) >= MIN_SECRET_CHARS:
            out |= {middle, middle.replace("+", "-").replace("/", "_")}
    return out


@dataclass(frozen=True)
class _Form:
    """One way a secret is written: itself, reversed, in hex, or in base64 at one alignment."""

    text: str
    name: str
    fold: bool
    """Matched regardless of case (hex); `text` is then lower case."""
    tail: bool
    """The regex matches this form's last characters, and the match grows backwards from them."""


@dataclass(frozen=True)
class _Known:
    """The compiled form of a set of secrets."""

    regex: re.Pattern[str]
    forms: dict[str, _Form]
    """Regex group name → the form it matches the head or the tail of."""
    literals: tuple[str, ...]
    """What the regex looks for, as plain strings: `in` on these is a cheap test that most texts, which
    contain no secret, pass without running the regex."""


def _build(secrets: dict[str, str]) -> _Known | None:
    """One regex for every form of every secret. Each form is found by its first and by its last
    `FRAGMENT_CHARS` characters, and the match then grows as far as the text goes on agreeing with it: a
    whole form, or what a cut upstream of here left of it at either end."""
    branches: list[str] = []
    forms: dict[str, _Form] = {}
    literals: list[str] = []
    for secret, name in sorted(secrets.items(), key=lambda kv: (-len(kv[0]), kv[0])):
        raw = secret.encode()
        variants = [(secret, False), (secret[::-1], False), (raw.hex(), True)]
        variants += [(m, False) for m in sorted(_b64_middles(raw), key=len, reverse=True)]
        for text, fold in variants:
            frag = min(FRAGMENT_CHARS, len(text))
            for tail, literal in ((False, text[:frag]), (True, text[-frag:])):
                if tail and len(text) <= frag:
                    continue
                group = f"g{len(forms)}"
                forms[group] = _Form(text, name, fold, tail)
                literals.append(literal)
                pattern = re.escape(literal)
                branches.append(f"(?P<{group}>{f'(?i:{pattern})' if fold else pattern})")
    if not branches:
        return None
    return _Known(re.compile("|".join(branches)), forms, tuple(dict.fromkeys(literals)))


def _known() -> _Known | None:
    global _compiled
    secrets = known_secrets()
    cached = _compiled
    if cached is not None and cached[0] == secrets:
        return cached[1]
    known = _build({v: n for v, n in secrets.items() if not _holds_no_secret(v)})
    _compiled = (secrets, known)
    return known


def _redact_known(text: str) -> str:
    known = _known()
    if known is None:
        return text
    lower = text.lower()
    if not any(s in text or s in lower for s in known.literals):
        return text
    out: list[str] = []
    pos = 0
    for m in known.regex.finditer(text):
        start, end = m.span()
        if start < pos:
            continue  # inside a secret already redacted by growing a match
        form = known.forms[m.lastgroup or ""]
        whole, n = form.text, end - start
        if form.tail:
            while n < len(whole) and start > pos and _same(text[start - 1], whole[-n - 1], form.fold):
                start, n = start - 1, n + 1
        else:
            while n < len(whole) and end < len(text) and _same(text[end], whole[n], form.fold):
                end, n = end + 1, n + 1
        out += [text[pos:start], f"[REDACTED:{form.name}]"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _same(char: str, expected: str, fold: bool) -> bool:
    return (char.lower() if fold else char) == expected


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters: the head and the tail, and a marker saying how much was cut between."""
    if len(text) <= limit:
        return text
    marker = f"\n[… {len(text) - limit} characters cut …]\n"
    marker = f"\n[… {len(text) - limit + len(marker)} characters cut …]\n"
    room = limit - len(marker)
    if room <= 0:
        return text[:limit]
    head = room - room // 2
    tail = room // 2
    return text[:head] + marker + (text[len(text) - tail :] if tail else "")


def _redact_plain(text: str) -> str:
    """Known values in every form, then the shapes."""
    text = _redact_known(text)
    lower = text.lower()
    for shape in _SHAPES:
        if any(t in lower for t in shape.triggers):
            text = shape.sub(text)
    return text


# Runs start where the previous character cannot belong to them: without it the regex retries from every
# character of every identifier, which costs more than the rest of the redaction.
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{24,}")
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{24,}={0,2}")
_MARKER = re.compile(r"\[REDACTED:([^\]]+)\]")
_PRINTABLE = bytes(range(32, 127)) + b"\t\n\r"


def _decodings(run: str, is_hex: bool) -> list[bytes]:
    """`run` decoded as hex or base64 (standard or URL-safe) at each alignment it may have been cut at."""
    out = []
    if is_hex:
        for offset in (0, 1):
            chunk = run[offset:]
            out.append(bytes.fromhex(chunk[: len(chunk) // 2 * 2]))
        return out
    chars = run.rstrip("=").translate(str.maketrans("-_", "+/"))
    for offset in range(4):
        chunk = chars[offset:]
        try:
            out.append(base64.b64decode(chunk[: len(chunk) // 4 * 4], validate=True))
        except binascii.Error:
            continue
    return out


@functools.lru_cache(maxsize=4096)
def _hides(run: str, is_hex: bool, known: int) -> str | None:
    """The name of the secret that the decoding of `run` holds, or None. Cached: the same identifiers
    (`reference_rejected_logps`) come by in every text; `known` ties the answer to the current secrets."""
    for data in _decodings(run, is_hex):
        if len(data.translate(None, _PRINTABLE)) > len(data) // 10:
            continue  # not text: the decoding of an identifier or of random bytes
        decoded = data.decode("latin-1")
        inner = _redact_plain(decoded)
        if inner != decoded and (found := _MARKER.search(inner)):
            return found[1]
    return None


def _redact_encoded(text: str) -> str:
    """A hex or base64 run whose decoding holds a secret (a shape, or a known value) goes as a whole: the
    only way to catch an encoded secret whose value disco does not know (a token read from a file)."""
    known = id(_known())
    for regex, is_hex in ((_HEX_RUN, True), (_B64_RUN, False)):
        if regex.search(text):

            def replace(m: re.Match[str], is_hex: bool = is_hex) -> str:
                name = _hides(m.group(0), is_hex, known)
                return m.group(0) if name is None else f"[REDACTED:{name}, encoded]"

            text = regex.sub(replace, text)
    return text


def _redact_reversed_shapes(text: str) -> str:
    """Secret shapes written backwards (a token reversed to get past a filter)."""
    backwards = text[::-1]
    lower = backwards.lower()
    spans = [
        (len(text) - m.end(), len(text) - m.start(), shape.name)
        for shape in _SHAPES
        if any(t in lower for t in shape.triggers)
        for m in shape.regex.finditer(backwards)
    ]
    out, pos = [], 0
    for start, end, name in sorted(spans):
        if start >= pos:
            out += [text[pos:start], f"[REDACTED:{name}, reversed]"]
            pos = end
    return "".join([*out, text[pos:]]) if out else text


def redact(text: str, limit: int | None = None) -> str:
    """`text` with every secret replaced by `[REDACTED:<NAME>]`, then cut to `limit` characters.

    Redaction comes first: a cut through a secret would leave a part of it that is no longer recognised.
    """
    if not isinstance(text, str):
        text = str(text)
    if text:
        text = _redact_reversed_shapes(_redact_encoded(_redact_plain(text)))
    return text if limit is None else truncate(text, limit)


def redact_obj(obj: Any, limit: int | None = None) -> Any:
    """`obj` with every string in it (dict keys included) redacted; dicts, lists, tuples and pydantic
    models are walked, anything else is returned as it is."""
    if isinstance(obj, str):
        return redact(obj, limit)
    if isinstance(obj, dict):
        return {redact_obj(k): redact_obj(v, limit) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v, limit) for v in obj)
    dump = getattr(obj, "model_dump", None)
    if dump is not None and hasattr(type(obj), "model_validate"):
        return type(obj).model_validate(redact_obj(dump(), limit))
    return obj
