"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the declared endpoints.

Every route module declares its endpoints (:mod:`lcx.api.spec`) with the msgspec types its
handlers decode and encode; this module turns them into paths, parameters, bodies and
responses, with JSON Schemas from ``msgspec.json.schema_components``. Errors are described
once, as the ``default`` response of every operation: the envelope of API.md section 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from quart import Blueprint
from quart_trio.wrappers import TrioResponse

from lcx.api.bodies import json_response
from lcx.api.common import Health, Readiness
from lcx.api.spec import MAX_PATH_PARAMETER, Endpoint, declare

_PATH_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_REF = "#/components/schemas/{name}"


class ErrorBody(msgspec.Struct, kw_only=True):
    """The inside of the error envelope."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    """Every error response: ``{"error": {"code", "message", "details"?}}``."""

    error: ErrorBody


def camel(name: str) -> str:
    """``org_id`` -> ``orgId``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def openapi_path(path: str) -> str:
    """Quart path syntax to OpenAPI: ``/a/<org_id>`` -> ``/a/{orgId}``."""
    return _PATH_PARAM.sub(lambda m: "{" + camel(m.group(1)) + "}", path)


def _types(endpoints: Iterable[Endpoint]) -> list[Any]:
    found: list[Any] = [ErrorEnvelope]
    for endpoint in endpoints:
        found += [t for t in (endpoint.body, endpoint.query) if t is not None]
        found += [t for t in endpoint.responses.values() if t is not None]
    for query in [e.query for e in endpoints if e.query is not None]:
        found += [field.type for field in msgspec.structs.fields(query)]
    unique: list[Any] = []
    for item in found:
        if not any(item is seen for seen in unique):
            unique.append(item)
    return unique


def build_document(endpoints: Iterable[Endpoint], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``endpoints``."""
    endpoints = list(endpoints)
    _check_operation_ids(endpoints)
    types = _types(endpoints)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = {id(t): s for t, s in zip(types, schemas, strict=True)}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation = _operation(endpoint, schema_of)
        paths.setdefault(openapi_path(endpoint.path), {})[endpoint.method.lower()] = operation
    components = {name: _bounded(schema) for name, schema in components.items()}
    components[JSON_VALUE] = _JSON_VALUE_SCHEMA
    paths = _bounded_schemas_in(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "lcx", "version": version,
                 "description": "The livechat exchange: bot API, management API, "
                                "provider webhooks and operations (docs/api.md). Text "
                                "anywhere (bodies, queries, paths) may not contain NUL characters "
                                "(400 invalid_request)."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


JSON_VALUE = "JsonValue"
"""The component that free-form values (metadata, payloads, contexts) refer to."""
_JSON_VALUE_REF = {"$ref": _REF.format(name=JSON_VALUE)}
_JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value; integers within what the bus and the stores carry "
                   "(-2^63 to 2^64-1), else 400 invalid_request.",
    "anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "string"}, {"type": "number"},
              {"type": "integer", "minimum": -(2 ** 63), "maximum": 2 ** 64 - 1},
              {"type": "array", "items": _JSON_VALUE_REF},
              {"type": "object", "additionalProperties": _JSON_VALUE_REF}]}


def _bounded(schema: Any) -> Any:
    """``schema`` with every free-form value (``{}``, or an object without declared
    properties) described as a :data:`JSON_VALUE`, so that its integer bound is part of
    the contract (and of what a generated client or fuzzer sends)."""
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if not schema:
        return dict(_JSON_VALUE_REF)
    bounded = {key: (_bounded(value) if key in _SUBSCHEMA_KEYS else
                     {k: _bounded(v) for k, v in value.items()} if key in _SCHEMA_MAPS
                     else value)
               for key, value in schema.items()}
    if bounded.get("type") == "object" and "properties" not in bounded \
            and "additionalProperties" not in bounded:
        bounded["additionalProperties"] = dict(_JSON_VALUE_REF)
    return bounded


_SUBSCHEMA_KEYS = frozenset({"items", "additionalProperties", "anyOf", "oneOf", "allOf",
                             "not", "prefixItems"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs"})


def _bounded_schemas_in(node: Any) -> Any:
    """Every ``schema`` of the paths (bodies, parameters, responses) bounded."""
    if isinstance(node, list):
        return [_bounded_schemas_in(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: (_bounded(value) if key == "schema" else _bounded_schemas_in(value))
            for key, value in node.items()}


def _check_operation_ids(endpoints: Iterable[Endpoint]) -> None:
    """OpenAPI requires every ``operationId`` to be unique (client generators name
    functions after them): a duplicate is a declaration bug, caught at the first build."""
    seen: dict[str, Endpoint] = {}
    for endpoint in endpoints:
        other = seen.setdefault(endpoint.operation, endpoint)
        if other is not endpoint:
            raise ValueError(f"operationId {endpoint.operation!r} of {endpoint.method} "
                             f"{endpoint.path} is also {other.method} {other.path}'s")


def _operation(endpoint: Endpoint, schema_of: dict[int, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation,
        "summary": endpoint.summary, "tags": [endpoint.tag],
        "parameters": _path_parameters(endpoint) + _query_parameters(endpoint, schema_of),
        "responses": _responses(endpoint, schema_of),
    }
    if endpoint.scopes:
        operation["security"] = [{"bearer": []}]
        operation["description"] = "Token scopes: " + ", ".join(endpoint.scopes) + "."
    if endpoint.body is not None:
        operation["requestBody"] = {"required": True, "content": {
            endpoint.body_media_type: {"schema": schema_of[id(endpoint.body)]}}}
    return operation


def _path_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    return [{"name": camel(name), "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAMETER}}
            for name in _PATH_PARAM.findall(endpoint.path)]


def _query_parameters(endpoint: Endpoint, schema_of: dict[int, Any]) -> list[dict[str, Any]]:
    if endpoint.query is None:
        return []
    parameters = []
    for field in msgspec.structs.fields(endpoint.query):
        schema = schema_of.get(id(field.type)) or msgspec.json.schema(field.type)
        parameters.append({"name": field.encode_name, "in": "query",
                           "required": field.required, "schema": schema})
    return parameters


def _responses(endpoint: Endpoint, schema_of: dict[int, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, body in endpoint.responses.items():
        response: dict[str, Any] = {"description": "success"}
        content: dict[str, Any] = {}
        if body is not None and endpoint.method != "HEAD":
            content["application/json"] = {"schema": schema_of[id(body)]}
        for media_type in endpoint.response_media_types.get(status, ()):
            content[media_type] = {"schema": {"type": "string", "format": "binary"}}
        if content:
            response["content"] = content
        if endpoint.response_headers:
            response["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                   for name, text in endpoint.response_headers.items()}
        responses[str(status)] = response
    responses["default"] = {"description": "an error (API.md section 1)", "content": {
        "application/json": {"schema": schema_of[id(ErrorEnvelope)]}}}
    return responses


class OpenApiRoutes:
    """Serves the document built from every endpoint declared so far."""

    def __init__(self, version: str) -> None:
        self.version = version

    async def document(self) -> TrioResponse:
        """``GET /openapi.json``."""
        from lcx.api.spec import ENDPOINTS

        return json_response(build_document(ENDPOINTS, version=self.version))


ENDPOINTS = (
    Endpoint("/healthz", "GET", "healthz", "Liveness", "operations",
             responses={200: Health}, errors=(), operation_id="getHealth"),
    Endpoint("/readyz", "GET", "readyz", "Readiness", "operations",
             responses={200: Readiness}, errors=(503,), operation_id="getReadiness"),
    Endpoint("/metrics", "GET", "metrics", "Prometheus metrics", "operations",
             responses={200: None}, response_media_types={200: ("text/plain",)}, errors=(),
             operation_id="getMetrics"),
    Endpoint("/openapi.json", "GET", "document", "This document", "operations",
             responses={200: dict[str, Any]}, errors=(), operation_id="getOpenApiDocument"),
)


def openapi_blueprint(version: str) -> Blueprint:
    """The blueprint serving ``/openapi.json`` (ops routes are declared here too)."""
    blueprint = Blueprint("openapi", __name__)
    routes = OpenApiRoutes(version)
    declare(ENDPOINTS[:3])  # served by the ops blueprint
    declare(ENDPOINTS[3:])
    blueprint.add_url_rule("/openapi.json", "openapi_document", routes.document,
                           methods=["GET"])
    return blueprint
