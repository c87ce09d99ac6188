"""A local certificate authority and a certificate for this machine, for ``make up TLS=1``
(and ``make secrets`` for compose: ``python -m launcher.tls --name satlas.example.com``).

    <run dir>/tls/ca.pem            the CA clients verify with (``--ca``, SATLAS_CA)
    <run dir>/tls/server.pem        Envoy's certificate: localhost, 127.0.0.1, ::1
    <run dir>/tls/server-key.pem    its key (0600); the CA's key is not kept

Made once and reused, so that a client's CA file stays good across restarts; a certificate within
a week of its end is made again (with a new CA).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from launcher.auth import write_private
from satkit.settings import RUN_DIR

NAMES = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")
DAYS = 365


@dataclass(frozen=True)
class LocalTls:
    ca: Path
    cert: Path
    key: Path


def ensure(directory: Path, now: dt.datetime | None = None, names: tuple[str, ...] = ()) -> LocalTls:
    """``names``: host names or IP addresses the certificate covers besides this machine's."""
    directory.mkdir(parents=True, exist_ok=True)
    files = LocalTls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    now = now or dt.datetime.now(dt.timezone.utc)
    if all(p.exists() for p in (files.ca, files.cert, files.key)):
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        names_in = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        covered = {str(n) for kind in (x509.DNSName, x509.IPAddress) for n in names_in.get_values_for_type(kind)}
        if cert.not_valid_after_utc - now > dt.timedelta(days=7) and set(names) <= covered:
            return files
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Satlas local CA")])
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [_name(n) for n in (*NAMES, *ADDRESSES, *names)]
    cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])]), ca_name, key.public_key(), now)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return files


def _name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(RUN_DIR.read()) / "tls", help="where (default .run/tls)")
    parser.add_argument("--name", action="append", default=[], help="a host name or IP the certificate covers "
                        "besides localhost (repeatable)")
    args = parser.parse_args(argv)
    files = ensure(args.dir, names=tuple(args.name))
    print(f"CA {files.ca}; certificate {files.cert} (key {files.key})")
    return 0


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=DAYS)))


if __name__ == "__main__":
    sys.exit(main())
