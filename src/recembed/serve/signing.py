"""Bundle signatures: an HMAC-SHA256 over the exact bytes of ``manifest.json``, with a key from the environment.

Checksums and signatures protect against different things:

* the **checksums** in the manifest (SHA-256 and size of every file) catch accidental damage: a truncated copy,
  a flipped bit, a file replaced by another bundle's. Anyone can recompute them, so they do not stop someone
  who edits an array on purpose and writes its new SHA-256 into the manifest;
* the **signature** (``signature.json``: ``{"algorithm": "hmac-sha256", "mac": HEX}``) is an HMAC of the
  manifest under a secret key (``RECEMBED_BUNDLE_KEY``). The manifest lists every file's SHA-256, so the MAC
  covers every byte of the bundle: an edited manifest or a re-checksummed array no longer matches, and only a
  holder of the key can sign again;
* **neither** protects against a stolen key (whoever has it can sign anything), nor against replay: an older
  bundle signed with the same key verifies as well as the newest one (rotate the key to retire old bundles).

``recembed bundle --sign`` signs (the key must be set); a signed bundle is checked whenever the key is set, and
``recembed serve --require-signature`` refuses an unsigned or wrongly signed one. MACs are compared with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from ..errors import DataError
from ..io import read_json, write_json

KEY_ENV = "RECEMBED_BUNDLE_KEY"
SIGNATURE = "signature.json"
ALGORITHM = "hmac-sha256"
MIN_KEY_CHARS = 16


class SignatureError(DataError):
    """A bundle whose signature is missing, malformed or does not match (or no key to check it with)."""


def bundle_key(*, required: bool, purpose: str) -> bytes | None:
    """The signing key from :data:`KEY_ENV` (UTF-8 bytes); None when unset and not ``required``."""
    value = os.environ.get(KEY_ENV, "")
    if not value:
        if required:
            raise SignatureError(f"{purpose} needs the signing key: set the environment variable {KEY_ENV}")
        return None
    if len(value) < MIN_KEY_CHARS:
        raise SignatureError(f"{KEY_ENV} is {len(value)} characters long; use at least {MIN_KEY_CHARS} "
                             "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
    return value.encode("utf-8")


def manifest_mac(manifest_bytes: bytes, key: bytes) -> str:
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def sign_manifest(bundle_dir: str | Path, key: bytes) -> Path:
    """Write ``signature.json`` for the ``manifest.json`` in ``bundle_dir`` (atomically)."""
    from .bundle_read import MANIFEST

    bundle_dir = Path(bundle_dir)
    mac = manifest_mac((bundle_dir / MANIFEST).read_bytes(), key)
    return write_json(bundle_dir / SIGNATURE, {"algorithm": ALGORITHM, "signed": MANIFEST, "mac": mac})


def is_signed(bundle_dir: str | Path) -> bool:
    return (Path(bundle_dir) / SIGNATURE).is_file()


def check_signature(bundle_dir: str | Path, manifest_bytes: bytes, *, require: bool) -> bool:
    """Verify the bundle's signature when it has one and the key is set; with ``require`` a missing key or
    signature is an error too. Returns whether a signature was verified."""
    bundle_dir = Path(bundle_dir)
    sig_path = bundle_dir / SIGNATURE
    if not sig_path.is_file():
        if require:
            raise SignatureError(f"the bundle is not signed (no {SIGNATURE}); a signature is required "
                                 f"(sign it with `recembed bundle --sign`, key in {KEY_ENV})", path=bundle_dir)
        return False
    key = bundle_key(required=require, purpose="a required signature check (--require-signature)")
    if key is None:
        return False
    try:
        sig = read_json(sig_path)
    except DataError as exc:
        raise SignatureError(f"unreadable signature ({exc})", path=sig_path) from None
    if not isinstance(sig, dict) or sig.get("algorithm") != ALGORITHM or not isinstance(sig.get("mac"), str):
        raise SignatureError(f"not a {ALGORITHM} signature", path=sig_path, field="algorithm")
    if not hmac.compare_digest(sig["mac"].encode(), manifest_mac(manifest_bytes, key).encode()):
        raise SignatureError("signature mismatch: manifest.json was changed after signing (e.g. an edited file "
                             f"whose checksum was recomputed), or it was signed with another key than {KEY_ENV}; "
                             "refusing to load", path=sig_path)
    return True
