// Redacts the configured top-level fields, like the Rust `mask-fields` example:
// `config: {fields: [ssn, card], mask: "***"}`.
//
// Built with componentize-js (through jco) against connectd's WIT (`plugins-sdk/wit`):
//   jco componentize mask-fields.js --wit ../../../../plugins-sdk/wit -n transform \
//     --disable http -o mask_fields_js.wasm

const NO_TIMESTAMP = -(2n ** 63n);
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let fields = [];
let mask = "***";

export function init(config) {
  const cfg = config ? JSON.parse(config) : {};
  if (!Array.isArray(cfg.fields) || !cfg.fields.every((f) => typeof f === "string")) {
    throw "config.fields must be a list of field names";
  }
  fields = cfg.fields;
  if (cfg.mask !== undefined) mask = cfg.mask;
}

export function process(batch) {
  const { data, keyStarts, valueStarts, valueEnds, timestamps, headerEnds } = batch;
  const chunks = [];
  let length = 0;
  const append = (bytes) => {
    const span = { start: length, len: bytes.length };
    chunks.push(bytes);
    length += bytes.length;
    return span;
  };
  // Copies the bytes of an input span into the output buffer.
  const put = (span) => append(data.slice(span.start, span.start + span.len));
  const headers = [];
  const outputs = [];
  for (let i = 0; i < valueStarts.length; i++) {
    const start = valueStarts[i];
    let value;
    try {
      value = JSON.parse(decoder.decode(data.subarray(start, valueEnds[i])));
    } catch (e) {
      throw { tag: "bad-record", val: { index: i, reason: `value is not JSON: ${e.message}` } };
    }
    const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
    if (!isObject || !fields.some((f) => f in value)) {
      outputs.push({ tag: "keep", val: i });
      continue;
    }
    for (const f of fields) {
      if (f in value) value[f] = mask;
    }
    const key = start > keyStarts[i] ? append(data.slice(keyStarts[i], start)) : undefined;
    const span = append(encoder.encode(JSON.stringify(value)));
    // The record keeps its headers.
    const first = headers.length;
    for (const h of batch.headers.slice(i ? headerEnds[i - 1] : 0, headerEnds[i])) {
      headers.push({ name: put(h.name), value: put(h.value) });
    }
    const ts = timestamps[i];
    outputs.push({
      tag: "emit",
      val: {
        key,
        value: span,
        timestamp: ts === NO_TIMESTAMP ? undefined : ts,
        headers: { start: first, len: headers.length - first },
      },
    });
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return { data: out, headers, outputs };
}

export function snapshot() {
  return new Uint8Array(0);
}

export function restore(_state) {}
