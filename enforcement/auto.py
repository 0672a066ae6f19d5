"""``import enforcement.auto`` checks every installed provider SDK's calls.

The same as calling :func:`enforcement.instrument` with no arguments at the
top of your program: SDKs imported later are hooked on import.
"""

from __future__ import annotations

from .hooks import instrument

instrument()
