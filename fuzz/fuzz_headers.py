"""atheris target: every preset's header parsing and verification, fed arbitrary bytes.

Any exception other than webhook_guard's ``Rejected`` is a finding (atheris reports it and
exits non-zero). Run for a bounded time, as the test suite does:

    python fuzz/fuzz_headers.py -max_total_time=20
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from webhook_guard.core.body import parse_content_length
    from webhook_guard.core.headers import Headers
    from webhook_guard.core.schemes import PRESETS, get_scheme
    from webhook_guard.exceptions import Rejected

SCHEMES = [get_scheme(name) for name in PRESETS]
KEYS = [b"k1", b"another key"]
NOW = 1_800_000_000.0


def header_names(index: int) -> list[str]:
    scheme = SCHEMES[index]
    names = [scheme.signature_header, "svix-signature", "svix-id", "svix-timestamp"]
    names += [n for n in (scheme.timestamp_header, scheme.id_header, scheme.event_header) if n]
    return names


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    index = fdp.ConsumeIntInRange(0, len(SCHEMES) - 1)
    pairs = [
        (name, fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 120)))
        for name in header_names(index)
        if fdp.ConsumeBool()
    ]
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2048))
    with contextlib.suppress(Rejected):
        SCHEMES[index].verify(Headers(pairs), body, KEYS, NOW)
    with contextlib.suppress(Rejected):
        parse_content_length(fdp.ConsumeUnicodeNoSurrogates(24), 1 << 20)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
