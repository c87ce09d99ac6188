"""How the project's clients open a channel: with the token (``authorization: Bearer``) when one
is known, and over TLS when given a CA file.

The token is ``SATLAS_TOKEN``, else the one ``make up`` wrote to ``$SATLAS_RUN_DIR/auth/token``.
Servers behind the front door ignore it; Envoy checks it (see ``launcher/envoy.py``).
"""

from __future__ import annotations

import collections
from pathlib import Path

import grpc

from satkit.settings import CA_FILE, RUN_DIR, TOKEN


def token_file(run_dir: Path | None = None) -> Path:
    return Path(run_dir or RUN_DIR.read()) / "auth" / "token"


def find_token() -> str:
    """SATLAS_TOKEN, else the local token file, else "" (no header sent)."""
    given = TOKEN.read().strip()
    if given:
        return given
    try:
        return token_file().read_text().strip()
    except OSError:
        return ""


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                    "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the token to every call on a plaintext channel (call credentials need TLS)."""

    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, d):
        return _Details(d.method, d.timeout, [*(d.metadata or ()), self.header], d.credentials,
                        d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def _credentials(ca: str | None, token: str | None) -> tuple[grpc.ChannelCredentials | None, str]:
    """(TLS credentials carrying the token, or None for plaintext; the token), from the arguments
    or their defaults."""
    ca = CA_FILE.read() if ca is None else ca
    token = find_token() if token is None else token
    if not ca:
        return None, token
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
    if token:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return credentials, token


def channel(target: str, options=(), *, ca: str | None = None, token: str | None = None) -> grpc.Channel:
    """A channel to ``target``; ``ca`` (default SATLAS_CA) means TLS verified against that CA file,
    ``token`` (default: ``find_token()``) rides on every call."""
    credentials, token = _credentials(ca, token)
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options=list(options))
    plain = grpc.insecure_channel(target, options=list(options))
    return grpc.intercept_channel(plain, _Bearer(token)) if token else plain


def aio_channel(target: str, options=(), *, ca: str | None = None,
                token: str | None = None) -> tuple[grpc.aio.Channel, tuple[tuple[str, str], ...]]:
    """As ``channel``, for grpc.aio, with the metadata to pass to every call: the token's header on
    a plaintext channel (an aio interceptor would put a queue between a stream and every message)."""
    credentials, token = _credentials(ca, token)
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=list(options)), ()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return grpc.aio.insecure_channel(target, options=list(options)), metadata


def add_arguments(parser) -> None:
    """--ca and --token, for every client tool."""
    parser.add_argument("--ca", default=None, help="CA file: connect over TLS, verified with it [SATLAS_CA]")
    parser.add_argument("--token", default=None,
                        help="token to send (default: SATLAS_TOKEN, else $SATLAS_RUN_DIR/auth/token)")
