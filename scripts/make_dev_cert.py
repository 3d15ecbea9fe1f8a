#!/usr/bin/env python3
"""Make a self-signed TLS certificate for the demo on 127.0.0.1 and localhost.

    python scripts/make_dev_cert.py [--dir demo-tls] [--force]

(``make demo-tls`` runs this, then serves https and wss with it.) Writes, into
``--dir`` (git-ignored):

* ``key.pem``: the private key (EC P-256, owner-readable only);
* ``cert.pem``: the certificate, valid for ``localhost``, ``127.0.0.1`` and
  ``::1``. Clients verify against it as their only trusted root:
  ``ssl.create_default_context(cafile="demo-tls/cert.pem")``,
  ``curl --cacert demo-tls/cert.pem``;
* ``trust.pem``: the usual public roots (certifi's bundle) plus ``cert.pem``,
  for the demo server's own HTTPS client (``SSL_CERT_FILE``): the "Simulate
  Didit" control posts to this server's https webhook, while calls to Didit's
  API must still verify against the public roots.

An existing certificate is kept while it has more than a day left (first
run makes it, later runs reuse it); ``--force`` makes a new one. Only the
``cryptography`` package is needed, no openssl binary.

Caveat: for development only. Browsers warn about a certificate no authority
signed; accept it once, or import ``cert.pem`` into the browser's trust store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "demo-tls"
VALID_DAYS = 365
RENEW_WITHIN = dt.timedelta(days=1)
DNS_NAMES = ["localhost"]
IP_ADDRESSES = ["127.0.0.1", "::1"]


def build_certificate() -> tuple[bytes, bytes]:
    """A fresh (key PEM, certificate PEM) pair for localhost / 127.0.0.1 / ::1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "didit_channels demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    subject_key = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host) for host in DNS_NAMES]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
            ),
            critical=False,
        )
        # A leaf, trusted directly: not a CA that could vouch for other names.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(subject_key, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def still_valid(cert_path: Path, key_path: Path) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    return certificate.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_WITHIN


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` (never wider)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def trust_bundle(cert_pem: bytes) -> bytes:
    """certifi's public roots followed by the demo certificate."""
    try:
        import certifi  # installed with httpx, which the app depends on
    except ImportError:
        return cert_pem
    return Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + cert_pem


def ensure_certificate(directory: Path, *, force: bool = False) -> tuple[Path, Path, bool]:
    """Make (or keep) the certificate in ``directory``; (cert, key, made_now)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    made = force or not still_valid(cert_path, key_path)
    if made:
        key_pem, cert_pem = build_certificate()
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    _write(directory / "trust.pem", trust_bundle(cert_path.read_bytes()), 0o644)
    return cert_path, key_path, made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where to write the files")
    parser.add_argument("--force", action="store_true", help="replace a still-valid certificate")
    args = parser.parse_args(argv)
    cert_path, _, made = ensure_certificate(args.dir, force=args.force)
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    expires = certificate.not_valid_after_utc.date().isoformat()
    verb = "made" if made else "kept"
    print(f"  TLS certificate ({verb}) {cert_path}  localhost, 127.0.0.1, ::1; until {expires}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
