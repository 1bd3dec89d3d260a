"""The event catalogue as an AsyncAPI 3.0 document, for the tools that read one (AsyncAPI
Studio, documentation and code generators). Generated from the same classes as the JSON Schema
catalogue; `spoc contracts check` keeps the checked-in copy current.

One channel per event type: the routing key on the topic exchange `spoc.events`. Each event
version is a message whose payload is the envelope, its `data` the event's schema. A `send`
operation per event type says it is published; a `receive` operation per subscribing service
and type says who hears it (spoc_contracts.topology)."""

from __future__ import annotations

import inspect
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic.json_schema import models_json_schema

from spoc_contracts.envelope import Envelope, Event
from spoc_contracts.registry import EVENT_CLASSES
from spoc_contracts.topology import SUBSCRIPTIONS

ASYNCAPI_VERSION = "3.0.0"
EXCHANGE = "spoc.events"
SCHEMAS = "#/components/schemas/"

Document = dict[str, Any]


def _contracts_version() -> str:
    try:
        return version("spoc-contracts")
    except PackageNotFoundError:  # a source tree never installed
        return "0.0.0"


def _key(event_type: str) -> str:
    """An AsyncAPI component key for an event type (keys allow letters, digits, `.`, `_`, `-`)."""
    return event_type


def _message_key(cls: type[Event]) -> str:
    return f"{cls.TYPE}.v{cls.VERSION}"


def _camel(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))


def build_asyncapi() -> Document:
    classes = sorted(EVENT_CLASSES, key=lambda cls: (cls.TYPE, cls.VERSION))
    refs, top = models_json_schema(
        [(Envelope, "serialization"), *((cls, "serialization") for cls in classes)],
        ref_template=SCHEMAS + "{model}",
    )
    schemas: dict[str, Any] = dict(sorted(top["$defs"].items()))

    def schema_ref(cls: type[Any]) -> str:
        return str(refs[(cls, "serialization")]["$ref"])

    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for cls in classes:
        key = _message_key(cls)
        messages[key] = {
            "name": key,
            "title": f"{cls.TYPE} version {cls.VERSION}",
            # cleandoc: Python 3.13 strips docstrings' indentation itself, 3.11 does not.
            "summary": inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0],
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": schema_ref(Envelope)},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": cls.TYPE},
                            "version": {"const": cls.VERSION},
                            "data": {"$ref": schema_ref(cls)},
                        },
                    },
                ]
            },
        }
        channel = channels.setdefault(
            _key(cls.TYPE),
            {
                "address": cls.TYPE,
                "title": cls.TYPE,
                "messages": {},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": EXCHANGE,
                            "type": "topic",
                            "durable": True,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": "0.3.0",
                    }
                },
            },
        )
        channel["messages"][key] = {"$ref": f"#/components/messages/{key}"}

    operations: dict[str, Any] = {}
    for event_type, channel in channels.items():
        listed = [
            {"$ref": f"#/channels/{event_type}/messages/{key}"} for key in channel["messages"]
        ]
        operations[f"publish{_camel(event_type)}"] = {
            "action": "send",
            "title": f"Publish {event_type}",
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": listed,
        }
        for service, types in SUBSCRIPTIONS.items():
            if event_type in types:
                operations[f"{service}Receives{_camel(event_type)}"] = {
                    "action": "receive",
                    "title": f"{service} hears {event_type} (queue {service}.events)",
                    "channel": {"$ref": f"#/channels/{event_type}"},
                    "messages": listed,
                    "bindings": {
                        "amqp": {"ack": True, "bindingVersion": "0.3.0"},
                    },
                }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Spoc events",
            "version": _contracts_version(),
            "description": (
                "Every event the Spoc services publish on RabbitMQ: one JSON envelope per "
                "message, routed by its type. Generated by `spoc contracts write`."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages, "schemas": schemas},
    }


def render_asyncapi() -> str:
    return json.dumps(build_asyncapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
