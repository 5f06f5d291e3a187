"""{{name}}: a connectd transform plugin. Upper-cases the text field named in its
config (`config: {field: name}`); other records pass unchanged."""

import json

import wit_world
from wit_world.imports import types
from wit_world.imports.types import (
    BadRecord,
    Event,
    Failure_BadRecord,
    Header,
    Output_Emit,
    Output_Keep,
    Processed,
    Span,
)
from componentize_py_types import Err

NO_TIMESTAMP = -(2**63)
# componentize-py makes a new `WitWorld` object for every call: state lives here.
FIELD = "name"


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        global FIELD
        cfg = json.loads(config) if config else {}
        field = cfg.get("field", "name")
        if not isinstance(field, str):
            raise Err("config.field must be text")
        FIELD = field

    def process(self, batch: types.Batch) -> types.Processed:
        data, out, headers, outputs = batch.data, bytearray(), [], []

        def put(start, length):
            """Copies input bytes into the output buffer."""
            span = Span(len(out), length)
            out.extend(data[start : start + length])
            return span

        for i, (start, end) in enumerate(zip(batch.value_starts, batch.value_ends)):
            try:
                value = json.loads(data[start:end])
            except ValueError as e:
                # This record goes to the dead-letter queue, the rest go on.
                raise Err(Failure_BadRecord(BadRecord(i, f"value is not JSON: {e}")))
            if not isinstance(value, dict) or not isinstance(value.get(FIELD), str):
                outputs.append(Output_Keep(i))  # unchanged: costs nothing to pass back
                continue
            value[FIELD] = value[FIELD].upper()
            key_start = batch.key_starts[i]
            key = put(key_start, start - key_start) if start > key_start else None
            text = json.dumps(value, separators=(",", ":")).encode()
            span = Span(len(out), len(text))
            out.extend(text)
            first = len(headers)
            for h in batch.headers[batch.header_ends[i - 1] if i else 0 : batch.header_ends[i]]:
                headers.append(Header(put(h.name.start, h.name.len), put(h.value.start, h.value.len)))
            ts = batch.timestamps[i]
            outputs.append(
                Output_Emit(
                    Event(key, span, None if ts == NO_TIMESTAMP else ts, Span(first, len(headers) - first))
                )
            )
        return Processed(bytes(out), headers, outputs)

    def snapshot(self) -> bytes:
        return b""

    def restore(self, state: bytes) -> None:
        pass
