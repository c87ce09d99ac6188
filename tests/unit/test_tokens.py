"""Tokens, keys and the local certificate (launcher.auth, launcher.tls), and the client side
(satkit.client). Envoy's checking of them is tested with a real Envoy in tests/mesh/test_auth.py."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import stat

import jwt
import pytest
from cryptography import x509
from satlas.v1 import analysis_service_pb2, ingest_service_pb2, model_admin_service_pb2, orchestrator_service_pb2

from launcher import auth, envoy, tls
from satkit import client


def test_a_token_carries_its_scopes_and_lifetime_and_verifies_against_the_jwks(tmp_path):
    keys = auth.ensure_keys(tmp_path)
    token = keys.token("cancel,read", ttl_s=90, subject="ana")
    jwk = json.loads((tmp_path / "jwks.json").read_text())["keys"][0]
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=auth.AUDIENCE, issuer=auth.ISSUER)
    assert claims["scope"] == "read cancel" and claims["sub"] == "ana"
    assert claims["exp"] - claims["iat"] == 90
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    assert stat.S_IMODE((tmp_path / "signing.pem").stat().st_mode) == 0o600


def test_keys_are_made_once_so_tokens_outlive_a_restart(tmp_path):
    first = auth.ensure_keys(tmp_path)
    token = first.token(["read"])
    again = auth.ensure_keys(tmp_path)
    assert again.kid == first.kid
    jwt.decode(token, again.private.public_key(), algorithms=["ES256"], audience=auth.AUDIENCE)


def test_the_local_token_has_every_scope_and_is_private(tmp_path):
    path = auth.write_local_token(tmp_path)
    claims = jwt.decode(path.read_text().strip(), options={"verify_signature": False})
    assert claims["scope"].split() == list(auth.SCOPES)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["", "write", "read,admin2", " , "])
def test_unknown_scopes_are_refused(bad):
    with pytest.raises(ValueError, match="comma-separated mix"):
        auth.parse_scopes(bad)


def test_lifetimes_take_units():
    assert [auth.parse_ttl(t) for t in ("90", "90s", "15m", "1h", "2d")] == [90, 90, 900, 3600, 172800]
    for bad in ("", "0", "-1h", "1w", "h"):
        with pytest.raises(ValueError):
            auth.parse_ttl(bad)


def test_make_token_prints_one(tmp_path, capsys):
    assert auth.main(["token", "--scopes", "read", "--ttl", "15m", "--run-dir", str(tmp_path)]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims["scope"] == "read" and claims["exp"] - claims["iat"] == 900


def test_the_local_certificate_is_for_localhost_signed_by_the_local_ca(tmp_path):
    files = tls.ensure(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    context = ssl.create_default_context(cafile=str(files.ca))  # loads: a CA a client can use
    assert context.cert_store_stats()["x509_ca"] == 1
    made = files.cert.read_bytes()
    assert tls.ensure(tmp_path).cert.read_bytes() == made  # reused
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=tls.DAYS - 3)
    assert tls.ensure(tmp_path, now=later).cert.read_bytes() != made  # made again near its end


def test_every_public_method_needs_a_scope_and_nothing_else_is_routed():
    public = {f"{s.full_name}/{m.name}" for pb in (ingest_service_pb2, orchestrator_service_pb2, analysis_service_pb2,
                                                   model_admin_service_pb2)
              for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert set(envoy.SCOPES) == public
    assert set(envoy.SCOPES.values()) == set(auth.SCOPES)
    rendered = envoy.config(envoy.EnvoySettings())
    routes = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["virtual_hosts"][0]["routes"]
    paths = [r["match"].get("path") for r in routes]
    assert not any("JobControl" in (p or "") for p in paths)
    for route in routes:
        path = route["match"].get("path", "")
        if path.lstrip("/") in envoy.SCOPES:
            needs = route["typed_per_filter_config"]["envoy.filters.http.rbac"]["rbac"]["rules"]["policies"]
            assert list(needs) == [f"scope-{envoy.SCOPES[path.lstrip('/')]}"]


def test_without_keys_the_front_door_renders_open():
    filters = envoy._filters(envoy.EnvoySettings(jwks=""))
    assert [f["name"] for f in filters] == ["envoy.filters.http.grpc_web", "envoy.filters.http.cors",
                                            "envoy.filters.http.local_ratelimit", "envoy.filters.http.router"]


def test_clients_find_the_token_from_the_environment_then_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("SATLAS_TOKEN", raising=False)
    monkeypatch.setenv("SATLAS_RUN_DIR", str(tmp_path))
    assert client.find_token() == ""
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "token").write_text("from-file\n")
    assert client.find_token() == "from-file"
    monkeypatch.setenv("SATLAS_TOKEN", "from-env")
    assert client.find_token() == "from-env"
