"""Import and export of the policy — deployments, tenants, authorities — as JSON.

``hostguard_import``, ``hostguard_export`` and ``hostguard_demo`` are thin wrappers
around :func:`read_document`, :func:`import_policy`, :func:`export_policy` and
:func:`allowed_hosts_document`. The modules: ``reading`` (file and JSON),
``document`` (structure and values), ``validation`` (the file against the
database), ``importing``, ``exporting``, ``allowed_hosts``.

The format::

    {"deployments": [{"name": "eu-1", "description": ""}],
     "tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "active": true,
                  "authorities": ["acme.example", {"authority": "https://shop.acme.example:8443",
                                                   "active": false, "note": "moving"}]}]}

Every entry states the whole record: an omitted optional field takes its default
(``description`` and ``note`` empty, ``active`` true, ``authorities`` none).
"""

from __future__ import annotations

from hostguard.transfer.allowed_hosts import allowed_hosts_document
from hostguard.transfer.document import Document, parse_document
from hostguard.transfer.exporting import count_exported, dump, export_policy
from hostguard.transfer.importing import ImportResult, Tally, import_policy
from hostguard.transfer.reading import TransferError, parse_json, read_document
from hostguard.transfer.validation import SHARED_NAMES_FLAG

__all__ = [
    "SHARED_NAMES_FLAG",
    "Document",
    "ImportResult",
    "Tally",
    "TransferError",
    "allowed_hosts_document",
    "count_exported",
    "dump",
    "export_policy",
    "import_policy",
    "parse_document",
    "parse_json",
    "read_document",
]
