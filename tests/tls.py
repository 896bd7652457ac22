"""Support for TLS tests: a throwaway certificate authority, certificates it signs, and
an NSS database in which a browser trusts it.

Not a test module. Everything is made with the ``openssl`` and ``certutil``
(``libnss3-tools``) command-line tools in a temporary directory::

    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "site", ["*.shops.example"])
    home = nss_home(tmp_path / "home", ca)   # Chromium started with HOME=home trusts ca

When ``CI=true`` a missing tool fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Every certificate lives a day: long enough for any test, useless if it ever leaked.
DAYS = "1"


def require_tool(name: str, package: str) -> str:
    """The path of command ``name``; under ``CI=true`` fail when it is missing, elsewhere skip."""
    path = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).is_file() and os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        message = f"the {name} command is missing: apt-get install {package}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)
    return path


def _run(command: Sequence[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}… exited with {done.returncode}: {done.stderr[-2000:]}")


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed root (EC P-256) that signs server certificates."""

    cert: Path
    key: Path
    name: str

    @classmethod
    def create(cls, directory: Path, name: str = "hostguard test CA") -> CertificateAuthority:
        openssl = require_tool("openssl", "openssl")
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "ca.pem", directory / "ca.key"
        _run(
            [
                openssl, "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-days", DAYS, "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", str(key), "-out", str(cert),
            ]
        )  # fmt: skip
        return cls(cert, key, name)

    def issue(self, directory: Path, names: Sequence[str]) -> tuple[Path, Path]:
        """A server certificate for DNS ``names`` (wildcards allowed) and its key: (cert, key)."""
        openssl = require_tool("openssl", "openssl")
        directory.mkdir(parents=True, exist_ok=True)
        cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
        extensions = directory / "server.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={','.join('DNS:' + name for name in names)}\n"
        )
        _run(
            [
                openssl, "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(request),
            ]
        )  # fmt: skip
        _run(
            [
                openssl, "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
                "-CAcreateserial", "-days", DAYS, "-extfile", str(extensions), "-out", str(cert),
            ]
        )  # fmt: skip
        return cert, key


def nss_home(home: Path, ca: CertificateAuthority) -> Path:
    """A home directory whose NSS database (``.pki/nssdb``) trusts ``ca`` for TLS servers.

    Chromium on Linux reads the user's trust settings from ``$HOME/.pki/nssdb``; started
    with ``HOME=home`` it accepts certificates ``ca`` signed, and only those — unlike
    ``--ignore-certificate-errors``, which would also skip the name checks that HTTP/2
    connection coalescing depends on.
    """
    certutil = require_tool("certutil", "libnss3-tools")
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    _run([certutil, "-d", f"sql:{database}", "-N", "--empty-password"])
    _run([certutil, "-d", f"sql:{database}", "-A", "-t", "C,,", "-n", ca.name, "-i", str(ca.cert)])
    return home
