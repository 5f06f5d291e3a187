"""Redacts the configured top-level fields, like the Rust `mask-fields` example:
`config: {fields: [ssn, card], mask: "***"}`.

Built with componentize-py against connectd's WIT (`plugins-sdk/wit`):
    componentize-py -d ../../../../plugins-sdk/wit -w transform componentize app -o mask_fields.wasm
"""

import json

import wit_world
from wit_world.imports import types
from wit_world.imports.types import Span, Header, Event, Output_Keep, Output_Emit, Processed
from componentize_py_types import Err


# componentize-py makes a new `WitWorld` for every call: the settings live here.
FIELDS: list = []
MASK = "***"


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        global FIELDS, MASK
        cfg = json.loads(config) if config else {}
        fields = cfg.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Err("config.fields must be a list of field names")
        FIELDS = fields
        MASK = cfg.get("mask", "***")

    def process(self, batch: types.Batch) -> types.Processed:
        data = batch.data
        out = bytearray()
        headers = []
        outputs = []

        def put(span):
            """Copies the bytes of an input span into the output buffer."""
            new = Span(len(out), span.len)
            out.extend(data[span.start : span.start + span.len])
            return new

        for i, (start, end) in enumerate(zip(batch.value_starts, batch.value_ends)):
            try:
                value = json.loads(data[start:end])
            except ValueError as e:
                raise Err(types.Failure_BadRecord(types.BadRecord(i, f"value is not JSON: {e}")))
            if not isinstance(value, dict) or not any(f in value for f in FIELDS):
                outputs.append(Output_Keep(i))
                continue
            for f in FIELDS:
                if f in value:
                    value[f] = MASK
            key_start = batch.key_starts[i]
            key = put(Span(key_start, start - key_start)) if start > key_start else None
            text = json.dumps(value, separators=(",", ":")).encode()
            span = Span(len(out), len(text))
            out += text
            # The record keeps its headers.
            first = len(headers)
            for h in batch.headers[batch.header_ends[i - 1] if i else 0 : batch.header_ends[i]]:
                headers.append(Header(put(h.name), put(h.value)))
            ts = batch.timestamps[i]
            outputs.append(
                Output_Emit(
                    Event(
                        key,
                        span,
                        None if ts == -(2**63) else ts,
                        Span(first, len(headers) - first),
                    )
                )
            )
        return Processed(bytes(out), headers, outputs)

    def snapshot(self) -> bytes:
        return b""

    def restore(self, state: bytes) -> None:
        pass
