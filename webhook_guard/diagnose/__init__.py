"""Troubleshooting a webhook endpoint from the sender's side: ``send``, ``check`` and ``verify``.

- ``client``: build a correctly signed delivery for any preset and POST it (stdlib only).
- ``check``: the receiving checklist, run for real against a URL; one ``CheckResult`` per line.
- ``verify``: why a signature does not match, as ``Finding(cause, fix)`` rows; pure functions.

Like the core, this package imports no web framework, no queue engine and no HTTP library
beyond the standard library. Nothing here ever returns or prints a secret or an expected digest.
"""

from __future__ import annotations
