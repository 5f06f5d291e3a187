// {{name}}: a connectd transform plugin. Upper-cases the text field named in its
// config (`config: {field: name}`); other records pass unchanged.

const NO_TIMESTAMP = -(2n ** 63n);
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let field = "name";

export function init(config) {
  const cfg = config ? JSON.parse(config) : {};
  if (cfg.field !== undefined && typeof cfg.field !== "string") {
    throw "config.field must be text";
  }
  if (cfg.field !== undefined) field = cfg.field;
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
  const put = (start, len) => append(data.slice(start, start + len));
  const headers = [];
  const outputs = [];
  for (let i = 0; i < valueStarts.length; i++) {
    const start = valueStarts[i];
    let value;
    try {
      value = JSON.parse(decoder.decode(data.subarray(start, valueEnds[i])));
    } catch (e) {
      // This record goes to the dead-letter queue, the rest go on.
      throw { tag: "bad-record", val: { index: i, reason: `value is not JSON: ${e.message}` } };
    }
    const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
    if (!isObject || typeof value[field] !== "string") {
      outputs.push({ tag: "keep", val: i }); // unchanged: costs nothing to pass back
      continue;
    }
    value[field] = value[field].toUpperCase();
    const key = start > keyStarts[i] ? put(keyStarts[i], start - keyStarts[i]) : undefined;
    const span = append(encoder.encode(JSON.stringify(value)));
    const first = headers.length;
    for (const h of batch.headers.slice(i ? headerEnds[i - 1] : 0, headerEnds[i])) {
      headers.push({ name: put(h.name.start, h.name.len), value: put(h.value.start, h.value.len) });
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
