// A method result that is already JSON (Host.getAllVmStats' reply, assembled from cached per-VM
// bytes). The transport puts it into the response envelope as it is instead of serialising a
// value; a serialiser that does not know about it still gets the right output through toJSON,
// only slower.
import type { JSONRPCResponse } from 'json-rpc-2.0';
import type { Reply } from './registry.js';

export class JsonText {
  /** `bytes`: one JSON value, UTF-8. */
  constructor(readonly bytes: Buffer) {}

  toJSON(): unknown {
    return JSON.parse(this.bytes.toString('utf8'));
  }
}

const CLOSE_BRACE = Buffer.from('}');

function hasJsonText(r: JSONRPCResponse): r is JSONRPCResponse & { result: JsonText } {
  return 'result' in r && r.result instanceof JsonText;
}

function responseParts(r: JSONRPCResponse, parts: Buffer[]): void {
  if (hasJsonText(r)) {
    parts.push(Buffer.from(`{"jsonrpc":"2.0","id":${JSON.stringify(r.id)},"result":`), r.result.bytes, CLOSE_BRACE);
  } else parts.push(Buffer.from(JSON.stringify(r)));
}

/** The UTF-8 text of a reply (a response or a batch of them); plain JSON.stringify when nothing is pre-serialised. */
export function replyText(reply: NonNullable<Reply>): string | Buffer {
  const list = Array.isArray(reply) ? reply : [reply];
  if (!list.some(hasJsonText)) return JSON.stringify(reply);
  const parts: Buffer[] = [];
  if (Array.isArray(reply)) parts.push(Buffer.from('['));
  list.forEach((r, i) => {
    if (i) parts.push(Buffer.from(','));
    responseParts(r, parts);
  });
  if (Array.isArray(reply)) parts.push(Buffer.from(']'));
  return Buffer.concat(parts);
}
