"""The Envoy front door: one listener for the dashboard's static files, grpc-web from the browser
and native gRPC from outside clients, routed by service to the three servers.

The config is rendered from settings, because its addresses differ between the local stack
(127.0.0.1, any port), tests (free ports) and compose (service names). ``envoy/envoy.yaml`` and
``envoy/envoy.compose.yaml`` are two renderings, committed so that they can be read and used
as they are; a test fails when they drift from this module.

    python -m launcher.envoy --write        # re-render the committed files
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# Rendered by launcher/envoy.py (python -m launcher.envoy --write); edit that, not this file.\n"
# Which server answers which gRPC service.
ROUTES = {
    "satlas.v1.IngestService": "ingest",
    "satlas.v1.OrchestratorService": "orchestrator",
    "satlas.v1.AnalysisService": "analysis",
    "satlas.v1.ModelAdminService": "analysis",
}
# The scope a token needs for each public method (``launcher.auth``). Only these are routed: any
# other gRPC call (JobControlService, a method not listed) is answered UNIMPLEMENTED by Envoy.
SCOPES = {
    "satlas.v1.IngestService/SubmitSeries": "submit",
    "satlas.v1.IngestService/StreamSeries": "submit",
    "satlas.v1.IngestService/BatchSubmitSeries": "submit",
    "satlas.v1.AnalysisService/Analyze": "submit",
    "satlas.v1.AnalysisService/ListModels": "read",
    "satlas.v1.OrchestratorService/GetJob": "read",
    "satlas.v1.OrchestratorService/ListJobs": "read",
    "satlas.v1.OrchestratorService/WatchJob": "read",
    "satlas.v1.OrchestratorService/WatchJobs": "read",
    "satlas.v1.OrchestratorService/GetStats": "read",
    "satlas.v1.OrchestratorService/CancelJob": "cancel",
    "satlas.v1.ModelAdminService/LoadModel": "admin",
    "satlas.v1.ModelAdminService/UnloadModel": "admin",
}
HEALTH = "/grpc.health.v1.Health/Check"  # open, answered by the ingest: what load balancers probe
# Server streams: no route timeout and no idle timeout, or Envoy would end a quiet WatchJobs.
STREAMS = ("satlas.v1.OrchestratorService/WatchJob", "satlas.v1.OrchestratorService/WatchJobs",
           "satlas.v1.IngestService/StreamSeries")
GRPC_HEADERS = "grpc-status,grpc-message,grpc-status-details-bin"


@dataclass(frozen=True)
class EnvoySettings:
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    admin: tuple[str, int] = ("127.0.0.1", 9901)
    # host:port of each cluster, or several (replicas: round robin, a dead one ejected).
    upstreams: dict[str, tuple] = field(default_factory=lambda: {
        "ingest": ("127.0.0.1", 50051), "orchestrator": ("127.0.0.1", 50052),
        "analysis": ("127.0.0.1", 50053), "web": ("127.0.0.1", 8081)})
    # Origins allowed to call grpc-web from another origin (the dashboard itself is same-origin).
    cors_origins: tuple[str, ...] = ("http://localhost:8080", "http://127.0.0.1:8080",
                                     "http://localhost:5173", "http://127.0.0.1:5173")
    # The JWKS tokens are verified against ("": no authentication; relative: to Envoy's directory).
    jwks: str = ".run/auth/jwks.json"
    # Certificate chain and key: TLS only on the listener ("": plaintext).
    tls_cert: str = ""
    tls_key: str = ""
    # Requests per second each client address may make (a bucket of `rate_burst`); 0: no limit.
    rate_per_s: int = 1000
    rate_burst: int = 2000
    # A trace viewer's page of one trace, "{trace_id}" in it: the dashboard links jobs there.
    trace_url: str = ""


def _address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def endpoints(upstream: tuple) -> list[tuple[str, int]]:
    """(host, port), or a tuple of them."""
    return list(upstream) if isinstance(upstream[0], tuple) else [upstream]


def _cluster(name: str, upstream: tuple, http2: bool) -> dict:
    hosts = endpoints(upstream)
    cluster = {
        "name": name,
        "type": "STRICT_DNS" if not hosts[0][0][0].isdigit() else "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(h, p)}} for h, p in hosts]}]},
        # Edge practice: bound what one upstream connection may buffer.
        "per_connection_buffer_limit_bytes": 1048576,
    }
    if len(hosts) > 1:  # replicas: one that refuses connections is left out for a while
        cluster["outlier_detection"] = {"consecutive_local_origin_failure": 2,
                                        "split_external_local_origin_errors": True,
                                        "base_ejection_time": "5s", "max_ejection_percent": 50}
    if http2:  # gRPC needs HTTP/2 to the servers
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {
                    "connection_keepalive": {"interval": "30s", "timeout": "10s"}}},
            }}
    return cluster


# With replicas, a request that never reached a server (refused, reset before it was sent) goes to
# another one: what carries clients over a replica's death. Only there: on a single server the same
# policy made some grpc-web calls hang until their deadline (the fuzz test, ListJobs and GetStats).
RETRY = {"retry_on": "connect-failure,refused-stream,reset-before-request", "num_retries": 2,
         "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
         "host_selection_retry_max_attempts": 3}


def _routes(s: "EnvoySettings") -> list[dict]:
    replicated = {name for name, upstream in s.upstreams.items() if len(endpoints(upstream)) > 1}
    routes = [{"match": {"path": HEALTH}, "route": {"cluster": "ingest", "timeout": "10s"}}]
    for path, scope in SCOPES.items():
        cluster = ROUTES[path.split("/")[0]]
        if path in STREAMS:
            route = {"cluster": cluster, "timeout": "0s", "idle_timeout": "0s",
                     "max_stream_duration": {"grpc_timeout_header_max": "0s"}}
        else:  # the caller's grpc-timeout is the deadline; without one, a minute
            route = {"cluster": cluster, "timeout": "60s", "max_stream_duration": {"grpc_timeout_header_max": "0s"}}
        # Never StreamSeries: a retry would hold a producer's stream in Envoy's buffer.
        if cluster in replicated and not path.endswith("/StreamSeries"):
            route["retry_policy"] = RETRY
        entry = {"match": {"path": f"/{path}"}, "route": route}
        if s.jwks:
            entry["typed_per_filter_config"] = {"envoy.filters.http.rbac": _needs(scope)}
        routes.append(entry)
    # Any other gRPC call (JobControlService, a method not listed) ends here: UNIMPLEMENTED. By path
    # too: a grpc-web call is matched before its content type is translated.
    for match in ({"prefix": "/satlas."}, {"prefix": "/", "grpc": {}}):
        routes.append({"match": match, "direct_response": {"status": 404,
                                                           "body": {"inline_string": "no such public method"}}})
    # The dashboard's settings from the stack: one file Envoy answers itself (the files are shared).
    routes.append({"match": {"path": "/config.json"}, "direct_response": {
        "status": 200, "body": {"inline_string": json.dumps({"traceUrl": s.trace_url})}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]})
    # Everything else is the dashboard's static files.
    routes.append({"match": {"prefix": "/"}, "route": {"cluster": "web", "timeout": "15s"}})
    return routes


def _needs(scope: str) -> dict:
    """RBAC for one route: the verified token's `scope` (split into a list by jwt_authn) holds ``scope``."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": {"rules": {"action": "ALLOW", "policies": {f"scope-{scope}": {
            "permissions": [{"any": True}],
            "principals": [{"sourced_metadata": {"metadata_source": "DYNAMIC", "metadata_matcher": {
                "filter": "envoy.filters.http.jwt_authn", "path": [{"key": "jwt_payload"}, {"key": "scope"}],
                "value": {"list_match": {"one_of": {"string_match": {"exact": scope}}}}}}}],
        }}}},
    }


def _jwt_authn(s: EnvoySettings) -> dict:
    from launcher.auth import AUDIENCE, ISSUER

    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"satlas": {
            "issuer": ISSUER, "audiences": [AUDIENCE],
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "forward": True,  # the ingest counts its quota per token
            "local_jwks": {"filename": s.jwks},
            "require_expiration": True,  # the default takes a token without `exp`
            "clock_skew_seconds": 10,  # the default, 60, lets a token live a minute past its `exp`
            "payload_in_metadata": "jwt_payload",
            "jwt_cache_config": {"jwt_cache_size": 1000},  # a token seen again is not verified again
            "normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]},
        }},
        # A token for every public method; the health check and the dashboard's files are open.
        "rules": [{"match": {"path": f"/{path}"}, "requires": {"provider_name": "satlas"}} for path in SCOPES],
    }


def _rate_limit(s: EnvoySettings) -> dict:
    """One token bucket per client address (an empty descriptor value: a bucket per distinct one)."""
    bucket = {"max_tokens": s.rate_burst, "tokens_per_fill": s.rate_per_s, "fill_interval": "1s"}
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "per_client",
        "rate_limited_as_resource_exhausted": True,  # gRPC's RESOURCE_EXHAUSTED, not UNAVAILABLE
        "always_consume_default_token_bucket": False,
        "max_dynamic_descriptors": 10000,
        "token_bucket": {"max_tokens": 1 << 30, "tokens_per_fill": 1 << 30, "fill_interval": "1s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "rate_limits": [{"actions": [{"remote_address": {}}]}],
        "descriptors": [{"entries": [{"key": "remote_address", "value": ""}], "token_bucket": bucket}],
    }


def _cors(s: EnvoySettings) -> dict:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": o} for o in s.cors_origins],
        "allow_methods": "GET, POST, OPTIONS",
        "allow_headers": ("authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout,"
                          "connect-protocol-version,connect-timeout-ms"),
        # Without these a browser sees "missing trailer" instead of the real status.
        "expose_headers": GRPC_HEADERS,
        "max_age": "86400",
        "forward_not_matching_preflights": False,  # another origin's preflight ends here, refused
    }


def _manager(s: EnvoySettings) -> dict:
    """The HTTP connection manager: one port for grpc-web, gRPC and the page."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",  # HTTP/1.1 (grpc-web, the page) and HTTP/2 (gRPC) on one port
        # Edge practices (envoyproxy.io, "Configuring Envoy as an edge proxy").
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        "request_headers_timeout": "10s",
        "stream_idle_timeout": "300s",  # streams opt out per route above
        "common_http_protocol_options": {"idle_timeout": "3600s",
                                         "headers_with_underscores_action": "REJECT_REQUEST"},
        "http2_protocol_options": {"max_concurrent_streams": 100, "initial_stream_window_size": 65536,
                                   "initial_connection_window_size": 1048576,
                                   "connection_keepalive": {"interval": "30s", "timeout": "10s"}},
        "route_config": {"name": "satlas", "virtual_hosts": [{
            "name": "satlas", "domains": ["*"], "routes": _routes(s),
            "typed_per_filter_config": {"envoy.filters.http.cors": _cors(s)},
        }]},
        "http_filters": _filters(s),
        # grpc-web sees a rate-limited call as HTTP 429, which its filter turns into UNAVAILABLE
        # (rate_limited_as_resource_exhausted only reaches gRPC): say RESOURCE_EXHAUSTED here.
        "local_reply_config": {"mappers": [{
            "filter": {"status_code_filter": {"comparison": {
                "op": "EQ", "value": {"default_value": 429, "runtime_key": "satlas.local_reply_429"}}}},
            "headers_to_add": [
                {"header": {"key": "grpc-status", "value": "8"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
                {"header": {"key": "grpc-message", "value": "rate limited: too many requests from this client"},
                 "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
            "body": {"inline_string": ""}}]},
    }


def _filters(s: EnvoySettings) -> list[dict]:
    """Order matters: grpc_web translates, cors answers preflights, the rate limit counts every
    call (signed in or not), jwt_authn checks the token (UNAUTHENTICATED), rbac its scope
    (PERMISSION_DENIED), the router forwards."""
    filters = [
        ("envoy.filters.http.grpc_web",
         {"@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"}),
        ("envoy.filters.http.cors", {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}),
    ]
    if s.rate_per_s:
        filters.append(("envoy.filters.http.local_ratelimit", _rate_limit(s)))
    if s.jwks:
        filters.append(("envoy.filters.http.jwt_authn", _jwt_authn(s)))
        # No rules of its own: each public route carries its scope (``_needs``).
        filters.append(("envoy.filters.http.rbac",
                        {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}))
    filters.append(("envoy.filters.http.router",
                    {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}))
    return [{"name": name, "typed_config": typed} for name, typed in filters]


def _tls(s: EnvoySettings) -> dict:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],  # gRPC and grpc-web on one port
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "tls_certificates": [{"certificate_chain": {"filename": s.tls_cert},
                                  "private_key": {"filename": s.tls_key}}]}}}


def config(s: EnvoySettings) -> dict:
    return {
        "admin": {"address": _address(*s.admin)},  # stats and control: never beyond loopback
        "overload_manager": {
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                             "downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 10000}}]},
        "static_resources": {
            "listeners": [{
                "name": "satlas",
                "address": _address(*s.listen),
                "per_connection_buffer_limit_bytes": 32768,
                "filter_chains": [{
                    **({"transport_socket": _tls(s)} if s.tls_cert else {}),
                    "filters": [{"name": "envoy.filters.network.http_connection_manager",
                                 "typed_config": _manager(s)}]}],
            }],
            "clusters": [_cluster(name, upstream, http2=name != "web") for name, upstream in s.upstreams.items()],
        },
    }


def render(s: EnvoySettings) -> str:
    return HEADER + yaml.safe_dump(config(s), sort_keys=False, width=120)


COMPOSE = EnvoySettings(
    listen=("0.0.0.0", 8080), admin=("127.0.0.1", 9901), jwks="/etc/satlas/auth/jwks.json",
    tls_cert="/etc/satlas/tls/server.pem", tls_key="/etc/satlas/tls/server-key.pem",
    upstreams={"ingest": ("ingest", 50051), "orchestrator": ("orchestrator", 50052),
               "analysis": ("analysis", 50053), "web": ("web", 8081)},
)
COMMITTED = {ROOT / "envoy" / "envoy.yaml": EnvoySettings(), ROOT / "envoy" / "envoy.compose.yaml": COMPOSE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="re-render the committed configs")
    args = parser.parse_args(argv)
    for path, settings in COMMITTED.items():
        if args.write:
            path.write_text(render(settings))
            print(f"wrote {path.relative_to(ROOT)}")
        else:
            sys.stdout.write(render(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
