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
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from satlas.v1 import validation_pb2

Violation = tuple[str, str]  # (field path, description)


@lru_cache(maxsize=None)
def _rules_of(descriptor: _d.Descriptor) -> tuple:
    """(field, rules or None, has nested messages to check) for the fields worth visiting."""
    out = []
    for field in descriptor.fields:
        rules = field.GetOptions().Extensions[validation_pb2.rules] if field.GetOptions().HasExtension(
            validation_pb2.rules
        ) else None
        nested = field.message_type is not None and not field.message_type.GetOptions().map_entry
        if rules is not None or (nested and _has_rules(field.message_type)):
            out.append((field, rules, nested))
    return tuple(out)


@lru_cache(maxsize=None)
def _has_rules(descriptor: _d.Descriptor, _seen: frozenset = frozenset()) -> bool:
    if descriptor.full_name in _seen:
        return False
    seen = _seen | {descriptor.full_name}
    for field in descriptor.fields:
        if field.GetOptions().HasExtension(validation_pb2.rules):
            return True
        if field.message_type is not None and _has_rules(field.message_type, seen):
            return True
    return False


def _is_repeated(field: _d.FieldDescriptor) -> bool:
    return field.is_repeated


def violations(message: Message, prefix: str = "") -> list[Violation]:
    found: list[Violation] = []
    for field, rules, nested in _rules_of(message.DESCRIPTOR):
        path = prefix + field.name
        value = getattr(message, field.name)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if rules is not None:
            found.extend(_check(field, rules, value, path, message, is_map))
        if nested and not _is_repeated(field) and message.HasField(field.name):
            found.extend(violations(value, path + "."))
        elif nested and _is_repeated(field):
            for i, item in enumerate(value):
                found.extend(violations(item, f"{path}[{i}]."))
    return found


def _check(field, rules, value, path: str, message: Message, is_map: bool) -> Iterable[Violation]:
    repeated = _is_repeated(field) and not is_map
    if rules.required:
        if field.message_type is not None and not repeated and not is_map:
            if not message.HasField(field.name):
                yield path, "is required"
        elif len(value) == 0:
            yield path, "is required" if not repeated else "must not be empty"
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


def bad_request_status(found: list[Violation], message: str | None = None) -> status_pb2.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in found]
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=message or "; ".join(f"{f}: {d}" for f, d in found[:5]) + (" ..." if len(found) > 5 else ""),
    )
    status.details.add().Pack(detail)
    return status


async def abort_invalid(context: grpc.aio.ServicerContext, found: list[Violation], message: str | None = None):
    await context.abort_with_status(rpc_status.to_status(bad_request_status(found, message)))


class ValidationInterceptor(grpc.aio.ServerInterceptor):
    """Checks every unary request (and, through ``validated``, stream items) against the rules."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.unary_unary is None and handler.unary_stream is None:
            return handler
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                found = violations(request)
                if found:
                    await abort_invalid(context, found)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        inner_stream = handler.unary_stream

        async def unary_stream(request, context):
            found = violations(request)
            if found:
                await abort_invalid(context, found)
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
