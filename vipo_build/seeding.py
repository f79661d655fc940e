"""Seeds derived from names, so every random choice depends on what it is for, never on run order."""

import hashlib


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the given parts (stable across processes and Python versions)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
