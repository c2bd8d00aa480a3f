"""Redaction by rule: whatever can carry a credential is masked before it is shown or logged.

Used on every API answer that echoes input or Agora (``config``, timelines, callback events), on every
notification body and on every log line (:class:`workers.core.logs.JsonFormatter`). The stored request stays raw:
a step must send it to Agora.

The rule (a field name is *credential-like* when, lower-cased and with everything but letters and digits
removed, it)

* contains ``secret``, ``token``, ``passw`` (password, passwd), ``passphrase``, ``pwd``, ``credential``,
  ``signature``, ``salt``, ``cookie``, ``bearer``, ``jwt``, ``authoriz`` or ``auth`` not followed by ``or``
  (``auth``, ``authToken``, ``oauth``, ``authentication``; ``author`` and ``authority`` are innocent), or
  ``accesskey``, ``apikey``, ``privatekey``, ``streamkey``, ``sessionkey``, ``signingkey``, ``encryptionkey``,
  ``masterkey``, ``clientkey`` (so ``accessKeyId`` too);
* or ends with ``key`` or ``keys`` (``accessKey``, ``secretKey``, ``apiKey``, ``x-api-key``, ``streamKey``,
  ``idempotencyKey``; ``keyframe`` and ``keyboardLayout`` are innocent);
* or its last word (split at ``_``, ``-``, ``.``, spaces and camelCase humps) is ``sts``, ``sig``, ``pass``,
  ``otp`` or ``creds`` (``sts``, ``awsSts``, ``db_pass``; ``stsExpiration`` is a timestamp, ``hosts`` is not
  ``sts``).

A credential-like field keeps its place; its value becomes ``"***"`` (every string and number inside it when it
is an object or a list; ``null``, ``""`` and booleans stay as they are, so one sees whether it was set).

Every other string, and every field name, is scanned as text:

* URLs (``scheme://...``, anywhere in the text): userinfo, query string and fragment are masked
  (``https://user:pw@host/p?t=1#x`` → ``https://***@host/p?***#***``); for ``rtmp``/``rtmps``/``rtmpt``/
  ``rtmpe``/``rtmpte`` URLs everything after the application name is the stream key
  (``rtmp://cdn/live/STREAMKEY`` → ``rtmp://cdn/live/***``);
* ``Bearer <x>`` and ``Basic <x>`` credentials → ``Bearer ***``;
* ``name=value``, ``name: value`` and ``"name": "value"`` with a credential-like name (an error message that
  echoes a request, a ``repr``) → the value masked;
* JSON Web Tokens (``eyJ...``) → ``***``.

Numbers, booleans and ``null`` under other names come back unchanged, so do strings that match none of the
above. Values that are not JSON (objects) are returned as they are unless under a credential-like name.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_STRONG = re.compile(
    r"secret|token|passw|passphrase|pwd|credential|signature|salt|cookie|bearer|jwt|authoriz|auth(?!or)"
    r"|(?:access|api|private|stream|session|signing|encryption|master|client)key"
)
_LAST_WORDS = frozenset({"sts", "sig", "pass", "otp", "creds"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")

RTMP_SCHEMES = frozenset({"rtmp", "rtmps", "rtmpt", "rtmpe", "rtmpte"})
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]{0,15})://([^\s\"'<>\\`{}|^]*)")
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)
_NAME_SEP = re.compile(r"""(?P<q>["']?)(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P=q)\s*[:=]\s*""")
_VALUE = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&)}\]"']+""")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def is_credential_name(name: str) -> bool:
    """Whether a field name looks like it holds a credential (the rule in the module docstring)."""
    flat = _NOT_ALNUM.sub("", name.lower())
    if not flat:
        return False
    if _STRONG.search(flat) or flat.endswith(("key", "keys")):
        return True
    words = _WORD.findall(name)
    return bool(words) and words[-1].lower() in _LAST_WORDS


def _mask_url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    rest, hash_sign, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        authority = MASK + "@" + authority.rpartition("@")[2]
    if scheme.lower() in RTMP_SCHEMES:
        segments = path.split("/")  # "", app, stream key, ...
        if len(segments) > 2 and any(segments[2:]):
            path = f"/{segments[1]}/{MASK}"
    if query:
        query = MASK
    if fragment:
        fragment = MASK
    return f"{scheme}://{authority}{path}{question}{query}{hash_sign}{fragment}"


def _mask_named_values(text: str) -> str:
    """``name=value``, ``name: value``, ``"name": "value"``: the value masked when the name is credential-like.
    A pair with an innocent name consumes only its name, so ``failed: token=x`` still finds ``token``."""
    parts: list[str] = []
    done = 0
    for match in _NAME_SEP.finditer(text):
        if match.start() < done or not is_credential_name(match.group("name")):
            continue
        value = _VALUE.match(text, match.end())
        if value is None:
            continue
        quote = value.group(0)[0]
        parts += [text[done : match.end()], quote + MASK + quote if quote in "\"'" else MASK]
        done = value.end()
    return "".join(parts) + text[done:] if parts else text


def redact_url(url: str) -> str:
    """A URL (or a text holding URLs) with userinfo, query, fragment and RTMP stream keys masked."""
    return _URL.sub(_mask_url, url)


def redact_text(text: str) -> str:
    """A free text (log message, error message, URL) with every credential the rule recognises masked."""
    if not text:
        return text
    text = _URL.sub(_mask_url, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _mask_named_values(text)
    return _JWT.sub(MASK, text)


def _leaf(value: Any, masked: bool) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if masked:
            return MASK if value else value
        shown = redact_text(value)
        return value if shown == value else shown  # keep str subclasses (enums) when nothing changed
    if isinstance(value, bytes | bytearray):
        return (MASK if value else "") if masked else redact_text(bytes(value).decode("utf-8", "replace"))
    if masked:
        return MASK
    return value


def redact(value: Any) -> Any:
    """A redacted deep copy of a JSON value (dicts, lists, tuples, strings, numbers, booleans, ``null``).

    Iterative, so arbitrarily deep values never hit Python's recursion limit."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, bool]] = [(value, root, 0, False)]
    while stack:
        source, parent, slot, masked = stack.pop()
        if isinstance(source, dict):
            copy: dict[Any, Any] = {}
            parent[slot] = copy
            for key, item in source.items():
                shown = redact_text(key) if isinstance(key, str) else key
                copy[shown] = None
                child_masked = masked or (isinstance(key, str) and is_credential_name(key))
                stack.append((item, copy, shown, child_masked))
        elif isinstance(source, list | tuple):
            items: list[Any] = [None] * len(source)
            parent[slot] = items
            stack.extend((item, items, index, masked) for index, item in enumerate(source))
        else:
            parent[slot] = _leaf(source, masked)
    return root[0]


def redact_field(name: str, value: Any) -> Any:
    """``value`` redacted as the value of a field called ``name`` (masked whole when the name is
    credential-like)."""
    if is_credential_name(name):
        return redact({"secret": value})["secret"]
    return redact(value)
