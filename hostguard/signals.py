"""Signals hostguard sends, for sites that want to react to refused hosts."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent for every request hostguard refuses, with ``request``, ``reason``, ``host``,
#: ``port`` and ``scheme``.
host_mismatch = Signal()
