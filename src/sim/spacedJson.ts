// JSON as QEMU's QMP writer and Python's json.dumps print it: ", " between members and ": "
// after keys. The simulator writes what the real agents write, byte for byte in layout, so
// readers are tested against real framing and response sizes are realistic.
export function spacedJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ', ' : '') + spacedJson(value[i]);
    return out + ']';
  }
  let out = '{';
  let first = true;
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    out += (first ? '' : ', ') + JSON.stringify(k) + ': ' + spacedJson(v);
    first = false;
  }
  return out + '}';
}
