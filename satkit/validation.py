"""The contract's validation rules (satlas.v1.rules field options), enforced for every RPC.

Rules are read once per message type from the descriptors, so a rule added to a .proto
takes effect after `buf generate` with no code change here. Violations come back as
INVALID_ARGUMENT with google.rpc.BadRequest field violations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import grpc
from google.protobuf import descriptor as _d
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from satlas.v1 import validation_pb2

Violation = tuple[str, str]  # (field path, description)


_IN_PROGRESS: set[str] = set()  # guards recursive message types


@lru_cache(maxsize=None)
def _rules_of(descriptor: _d.Descriptor) -> tuple:
    """(field, rules or None, descend into it, repeated, map) for the fields worth visiting."""
    _IN_PROGRESS.add(descriptor.full_name)
    try:
        out = []
        for field in descriptor.fields:
            options = field.GetOptions()
            rules = options.Extensions[validation_pb2.rules] if options.HasExtension(validation_pb2.rules) else None
            is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
            nested = (field.message_type is not None and not is_map
                      and field.message_type.full_name not in _IN_PROGRESS and bool(_rules_of(field.message_type)))
            if rules is not None or nested:
                out.append((field, rules, nested, field.is_repeated and not is_map, is_map))
        return tuple(out)
    finally:
        _IN_PROGRESS.discard(descriptor.full_name)


def violations(message: Message, prefix: str = "") -> list[Violation]:
    found: list[Violation] = []
    for field, rules, nested, repeated, is_map in _rules_of(message.DESCRIPTOR):
        path = prefix + field.name
        value = getattr(message, field.name)
        if rules is not None:
            found.extend(_check(field, rules, value, path, message, repeated, is_map))
        if nested and repeated:
            for i, item in enumerate(value):
                found.extend(violations(item, f"{path}[{i}]."))
        elif nested and message.HasField(field.name):
            found.extend(violations(value, path + "."))
    return found


def _check(field, rules, value, path: str, message: Message, repeated: bool, is_map: bool) -> Iterable[Violation]:
    if rules.required:
        if field.message_type is not None and not repeated and not is_map:
            if not message.HasField(field.name):
                yield path, "is required"
        elif len(value) == 0:
            yield path, "must not be empty" if repeated else "is required"
    if is_map and rules.max_pairs and len(value) > rules.max_pairs:
        yield path, f"must have at most {rules.max_pairs} entries (got {len(value)})"
    if repeated:
        if rules.min_items and len(value) < rules.min_items and not (rules.required and not value):
            yield path, f"must have at least {rules.min_items} items (got {len(value)})"
        if rules.max_items and len(value) > rules.max_items:
            yield path, f"must have at most {rules.max_items} items (got {len(value)})"
        if rules.unique and len(set(value)) != len(value):
            seen = set()
            for i, item in enumerate(value):
                if item in seen:
                    yield f"{path}[{i}]", f"repeats {item!r}; items must be unique"
                seen.add(item)
    items = value if repeated else [value]
    if rules.finite and field.type in (_d.FieldDescriptor.TYPE_DOUBLE, _d.FieldDescriptor.TYPE_FLOAT):
        if not all(map(math.isfinite, items)):  # fast path: one pass in C for the common case
            for i, item in enumerate(items):
                if not math.isfinite(item):
                    yield (f"{path}[{i}]" if repeated else path), f"must be a finite number (got {item})"
    if rules.max_len and field.type == _d.FieldDescriptor.TYPE_STRING:
        for i, item in enumerate(items):
            if len(item) > rules.max_len:
                yield (f"{path}[{i}]" if repeated else path), f"must be at most {rules.max_len} characters"


def describe(found: list[Violation]) -> str:
    """One line for a status message: the first few violations."""
    return "; ".join(f"{f}: {d}" for f, d in found[:5]) + (" ..." if len(found) > 5 else "")


def bad_request_status(found: list[Violation], message: str | None = None) -> status_pb2.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in found]
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=message or describe(found),
    )
    status.details.add().Pack(detail)
    return status


async def abort_invalid(context: grpc.aio.ServicerContext, found: list[Violation], message: str | None = None):
    await context.abort_with_status(rpc_status.to_status(bad_request_status(found, message)))


INTERNAL_PREFIX = "/satlas.internal."


class Malformed:
    """What a public request whose bytes do not parse becomes, so that its handler answers
    INVALID_ARGUMENT (gRPC itself would answer UNKNOWN, as if the server had failed)."""

    def __init__(self, type_name: str, error: str):
        self.message = f"the request is not a valid {type_name}: {error}"
        self.violations: list[Violation] = [("request", f"is not a valid {type_name} ({error})")]


def tolerant(deserialize, type_name: str):
    def parse(data: bytes):
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Malformed(type_name, str(exc).removesuffix(f" with type '{type_name}'"))
    return parse


class ValidationInterceptor(grpc.aio.ServerInterceptor):
    """Checks every unary request of the public API against the rules before the handler runs.
    Streamed requests are checked item by item by their handler (a bad item must not end the
    stream). The services' internal calls carry what the public edge already checked (ingest
    validates each submission before CreateJobs); checking every value again cost the
    orchestrator about as much as storing it."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(INTERNAL_PREFIX):
            return handler
        service, _, method = handler_call_details.method.strip("/").partition("/")
        parse = tolerant(handler.request_deserializer, _input_type(service, method))
        if handler.request_streaming:  # its handler answers a Malformed item in the stream
            return grpc.stream_stream_rpc_method_handler(handler.stream_stream, parse, handler.response_serializer)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                await _reject_invalid(request, context)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, parse, handler.response_serializer)
        inner_stream = handler.unary_stream

        async def unary_stream(request, context):
            await _reject_invalid(request, context)
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, parse, handler.response_serializer)


@lru_cache(maxsize=None)
def _input_type(service: str, method: str) -> str:
    from google.protobuf import descriptor_pool

    try:
        return descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method).input_type.full_name
    except KeyError:
        return "message"


async def _reject_invalid(request, context) -> None:
    if isinstance(request, Malformed):
        await abort_invalid(context, request.violations, request.message)
    found = violations(request)
    if found:
        await abort_invalid(context, found)
