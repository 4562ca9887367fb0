"""How strong a configured secret is (PREFLOOP_SECRET_KEY, PREFLOOP_METRICS_TOKEN): a cheap, conservative
estimate that refuses the typed-by-hand values people ship, and passes what a random generator prints.

The rule, in order (the first failing part is the message):

1. at least 32 characters, and not a known placeholder;
2. an estimated entropy of at least 128 bits: each character counts log2 of the alphabet the value's
   character classes span (one-case hex digits 16; else decimal digits 10, lower- and upper-case letters
   26 each, any other character 33), except a character that continues a run (`aaaa`, `abcd`, `4321`: the
   same step of -1, 0 or +1 as the one before it), which counts nothing;
3. not made of repeats: deflate (zlib) must not shrink it below three quarters of its length, which catches
   a chunk written several times (`0123456789abcdef0123456789abcdef`, `passwordpassword...`).

`secrets.token_urlsafe(32)` (43 characters, about 250 bits by this estimate) and `secrets.token_hex(32)`
pass; `secrets.token_hex(16)` sits exactly at the floor and a run in it can put it below.
"""

from __future__ import annotations

import math
import string
import zlib

MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128
# Values people copy from examples: refused whatever their length.
PLACEHOLDERS = frozenset({"", "changeme", "change-me", "secret", "dev", "please-change-me", "test"})
_HEX = frozenset(string.hexdigits)


def _alphabet(value: str) -> int:
    if all(c in _HEX for c in value) and any(c.isalpha() for c in value) and (value.islower() or value.isupper()):
        return 16
    size = 0
    size += 10 if any(c.isdigit() for c in value) else 0
    size += 26 if any(c in string.ascii_lowercase for c in value) else 0
    size += 26 if any(c in string.ascii_uppercase for c in value) else 0
    size += 33 if any(not (c.isascii() and c.isalnum()) for c in value) else 0
    return max(size, 2)


def estimated_bits(value: str) -> float:
    """The estimated entropy of `value` in bits (rule 2 above)."""
    codes = [ord(c) for c in value]
    steps = [b - a for a, b in zip(codes, codes[1:], strict=False)]
    # Character i (from the third) is predictable when it repeats the step before it and that step is -1, 0
    # or +1; a single such step is common in random text (3 in 16 for hex), two in a row are rare.
    predictable = sum(1 for i in range(1, len(steps)) if steps[i] == steps[i - 1] and abs(steps[i]) <= 1)
    return (len(value) - predictable) * math.log2(_alphabet(value))


def _is_repetitive(value: str) -> bool:
    raw = value.encode()
    # 6 bytes of zlib framing (header and checksum) are not content.
    return len(zlib.compress(raw, 9)) - 6 < 0.75 * len(raw)


def secret_problem(value: str) -> str | None:
    """Why `value` must not be used as a secret, or None when it passes the rule above."""
    if value.strip().lower() in PLACEHOLDERS:
        return "empty or a placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"too short ({len(value)} characters; at least {MIN_SECRET_LENGTH})"
    bits = estimated_bits(value)
    if bits < MIN_SECRET_BITS:
        return f"too predictable (about {bits:.0f} bits of entropy; at least {MIN_SECRET_BITS})"
    if _is_repetitive(value):
        return "made of repeats"
    return None
