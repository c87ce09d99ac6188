"""Signed tokens for the front door: an ES256 key pair, the JWKS Envoy verifies with, and tokens
that carry scopes.

    python -m launcher.auth token --scopes read,submit --ttl 1h    # `make token SCOPES=... TTL=...`
    python -m launcher.auth keys                                   # keys and a local token (`make secrets`)

The private key stays in ``<run dir>/auth/signing.pem`` (mode 0600) and signs; Envoy holds only
the public half (``jwks.json``). ``make up`` writes a token with every scope to ``auth/token``,
which the project's clients read by themselves (see ``satkit.client``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from satkit.settings import RUN_DIR

ISSUER = "satlas"
AUDIENCE = "satlas"
# What each scope lets a token do; `admin` is for model management (issue 16).
SCOPES = ("submit", "read", "cancel", "admin")  # admin: load and unload models
DEFAULT_TTL_S = 3600.0
# The token `make up` leaves for the local clients: a day, so that a stack left running keeps working
# through a working day; a new `make up` writes a new one.
LOCAL_TTL_S = 24 * 3600.0


def auth_dir(run_dir: Path | None = None) -> Path:
    return Path(run_dir or RUN_DIR.read()) / "auth"


@dataclass(frozen=True)
class Keys:
    private: ec.EllipticCurvePrivateKey
    kid: str

    def jwks(self) -> dict:
        numbers = self.private.public_key().public_numbers()
        return {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                          "x": _b64(numbers.x.to_bytes(32, "big")), "y": _b64(numbers.y.to_bytes(32, "big"))}]}

    def token(self, scopes, ttl_s: float = DEFAULT_TTL_S, subject: str = "local") -> str:
        scopes = parse_scopes(scopes)
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + int(ttl_s),
                  "jti": uuid.uuid4().hex, "scope": " ".join(scopes)}
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"kid": self.kid})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_scopes(scopes) -> list[str]:
    """"read,submit" or ["read", "submit"] → known scopes in a fixed order; unknown ones raise."""
    wanted = [s for s in (re.split(r"[,\s]+", scopes) if isinstance(scopes, str) else scopes) if s]
    unknown = sorted(set(wanted) - set(SCOPES))
    if unknown or not wanted:
        raise ValueError(f"scopes must be a comma-separated mix of {', '.join(SCOPES)}; got {scopes!r}")
    return [s for s in SCOPES if s in wanted]


def ensure_keys(directory: Path) -> Keys:
    """The key pair under ``directory`` (made once, then reused: tokens stay valid across restarts),
    with ``jwks.json`` beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = directory / "signing.pem"
    if pem.exists():
        private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
        write_private(pem, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    keys = Keys(private, kid=_b64(hashlib.sha256(der).digest()[:12]))
    (directory / "jwks.json").write_text(json.dumps(keys.jwks(), indent=1))
    return keys


def write_local_token(directory: Path, ttl_s: float = LOCAL_TTL_S) -> Path:
    """A token with every scope in ``directory/token`` (0600), for this machine's clients."""
    keys = ensure_keys(directory)
    path = directory / "token"
    write_private(path, (keys.token(SCOPES, ttl_s) + "\n").encode())
    return path


def write_private(path: Path, data: bytes) -> None:
    """``data`` in a file only its owner reads (0600 from the start, never readable in between)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def parse_ttl(text: str) -> float:
    """"90", "90s", "15m", "1h", "2d" → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"TTL must be a positive number of seconds, or with s, m, h or d; got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("token", help="print a new token")
    tok.add_argument("--scopes", default=",".join(SCOPES), help=f"comma-separated: {', '.join(SCOPES)}")
    tok.add_argument("--ttl", default="1h", help="lifetime: seconds, or 15m, 1h, 2d (default 1h)")
    tok.add_argument("--subject", default="local", help="who the token is for (its `sub`)")
    tok.add_argument("--run-dir", type=Path, default=None, help="the stack's run directory [SATLAS_RUN_DIR]")
    keys = sub.add_parser("keys", help="make the key pair (once) and a local token with every scope")
    keys.add_argument("--run-dir", type=Path, default=None, help="the stack's run directory [SATLAS_RUN_DIR]")
    args = parser.parse_args(argv)
    if args.command == "keys":
        path = write_local_token(auth_dir(args.run_dir))
        print(f"keys and JWKS in {path.parent}; a token with every scope in {path}")
        return 0
    try:
        scopes, ttl = parse_scopes(args.scopes), parse_ttl(args.ttl)
    except ValueError as exc:
        parser.error(str(exc))
    print(ensure_keys(auth_dir(args.run_dir)).token(scopes, ttl, args.subject))
    return 0


if __name__ == "__main__":
    sys.exit(main())
