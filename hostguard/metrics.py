"""PLACEHOLDER — to be replaced by the real ``hostguard.metrics`` module (Prometheus).

Another branch adds hostguard's Prometheus metrics in this module and provides
:func:`count_tls_permission` there. This branch holds only that function's signature,
doing nothing, so that the TLS permission endpoint (:mod:`hostguard.views`) can call
it; when the branches are merged, the real module replaces this file as a whole.
"""

from __future__ import annotations


def count_tls_permission(answer: str) -> None:
    """Count one answer of the TLS permission endpoint.

    ``answer`` is one of ``allowed``, ``refused``, ``unavailable``, ``forbidden`` and
    ``malformed``. Placeholder: counts nothing.
    """
    return None
