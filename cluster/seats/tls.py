"""TLS of a seat gateway in front of a cluster we did not make (an existing or kind cluster).

Why its own certificate: on the embedded cluster the gateway serves with the API
server's certificate, which kwokctl made valid for 127.0.0.1. A kind or cloud
cluster's admin kubeconfig holds a client certificate, not one a listener on
127.0.0.1 can serve with, so the gateway makes a self-signed one for 127.0.0.1
that each seat's kubeconfig trusts. Why files: Python's ``ssl`` loads
certificates from paths, and a flattened kubeconfig carries them inline.
"""
from __future__ import annotations

import base64
import datetime
import os
from pathlib import Path
from typing import Any

from mlops_drill.errors import DrillError

SERVING_CERT, SERVING_KEY = "gateway.crt", "gateway.key"


def _write_private(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _material(kubeconfig: Path, section: dict[str, Any], field: str, folder: Path, name: str) -> Path:
    """A credential of the kubeconfig as a file: its path, or its inline ``-data`` written out."""
    if section.get(field):
        return Path(section[field])
    inline = section.get(f"{field}-data")
    if not inline:
        raise DrillError(f"kubeconfig {kubeconfig}: {field} is missing; seats of a shared cluster reach it as "
                         "its admin with a client certificate (a token or exec login is not supported)")
    return _write_private(folder / name, base64.b64decode(inline))


def credential_files(kubeconfig: Path, cluster: dict[str, Any], user: dict[str, Any],
                     folder: Path) -> tuple[Path, Path, Path]:
    """(CA, client certificate, client key) of the admin kubeconfig, as files under ``folder``."""
    return (_material(kubeconfig, cluster, "certificate-authority", folder, "upstream-ca.crt"),
            _material(kubeconfig, user, "client-certificate", folder, "admin.crt"),
            _material(kubeconfig, user, "client-key", folder, "admin.key"))


def serving_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, CA) the gateway serves 127.0.0.1 with: made once, then kept (kubeconfigs name it)."""
    cert, key = folder / SERVING_CERT, folder / SERVING_KEY
    if cert.is_file() and key.is_file():
        return cert, key, cert
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops-drill seat gateway")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    _write_private(key, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    _write_private(cert, certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key, cert
