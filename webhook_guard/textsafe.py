"""Text that is safe to print on a terminal: control characters shown, never obeyed.

Bodies, event types, headers and hints come from senders. Printed raw, an ESC or BEL byte in
them drives the terminal (moves the cursor, rewrites earlier lines, rings, sets the title):
terminal injection. ``printable`` escapes every C0 and C1 control character, DEL and the
bidirectional overrides as ``\\xNN`` / ``\\uNNNN``, keeping tabs as spaces.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embedding/override/isolate
# characters that reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters escaped; with ``newlines=False``, newlines too."""
    escaped = _UNSAFE.sub(_escape, text.replace("\t", " "))
    return escaped if newlines else escaped.replace("\n", "\\n")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
