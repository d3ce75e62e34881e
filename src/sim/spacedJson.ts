// JSON as QEMU's QMP writer and Python's json.dumps print it: ", " between members, ": " after
// keys, and every non-ASCII character escaped as \uXXXX (QEMU writes the hex digits in upper
// case, Python in lower case). The simulator writes what the real agents write, byte for byte,
// so readers are tested against real framing and response sizes are realistic.
export type HexCase = 'upper' | 'lower';

function quote(text: string, hexCase: HexCase): string {
  const json = JSON.stringify(text);
  const escaped = json.replace(/[\u007f-\uffff]/g, (c) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    return c === '\u007f' && hexCase === 'lower' ? c : '\\u' + (hexCase === 'upper' ? hex.toUpperCase() : hex);
  });
  return hexCase === 'upper'
    ? escaped.replace(/\\u00([0-9a-f]{2})/g, (_m, h: string) => '\\u00' + h.toUpperCase())
    : escaped;
}

export function spacedJson(value: unknown, hexCase: HexCase): string {
  if (typeof value === 'string') return quote(value, hexCase);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- JSON.stringify(undefined) is undefined, whatever its type says
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ', ' : '') + spacedJson(value[i], hexCase);
    return out + ']';
  }
  let out = '{';
  let first = true;
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    out += (first ? '' : ', ') + quote(k, hexCase) + ': ' + spacedJson(v, hexCase);
    first = false;
  }
  return out + '}';
}
