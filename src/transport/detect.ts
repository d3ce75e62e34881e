// Which protocol a connection speaks, from its first bytes (pure). An HTTP request line starts
// with a method and a space; a STOMP frame with a client command and an end of line (CONNECT
// is both: "CONNECT " is HTTP, "CONNECT\n" is STOMP). Blank lines before a STOMP command are
// heart-beats. Anything else is refused as soon as no protocol can match any more.

export type Detected = 'http' | 'stomp' | 'unknown' | 'undecided';

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT'];
/** The frames a STOMP client may send (STOMP 1.2 "Client Frames"). */
const STOMP_CLIENT_COMMANDS = [
  'CONNECT',
  'STOMP',
  'SEND',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'BEGIN',
  'COMMIT',
  'ABORT',
  'ACK',
  'NACK',
  'DISCONNECT',
];

const HTTP_OPENINGS = HTTP_METHODS.map((m) => Buffer.from(m + ' '));
const STOMP_OPENINGS = STOMP_CLIENT_COMMANDS.flatMap((c) => [Buffer.from(c + '\n'), Buffer.from(c + '\r\n')]);
/** Heart-beat lines tolerated before a STOMP command; more is not a client worth waiting for. */
const MAX_LEADING_EOL = 64;

export function detectProtocol(opening: Buffer): Detected {
  let start = 0;
  while (start < opening.length && start < MAX_LEADING_EOL && (opening[start] === 0x0a || opening[start] === 0x0d))
    start++;
  if (start === MAX_LEADING_EOL) return 'unknown';
  const rest = opening.subarray(start);
  if (rest.length === 0) return 'undecided';
  let possible = false;
  for (const o of STOMP_OPENINGS) {
    const m = matchOpening(rest, o);
    if (m === 'match') return 'stomp';
    if (m === 'prefix') possible = true;
  }
  if (start === 0) {
    for (const o of HTTP_OPENINGS) {
      const m = matchOpening(rest, o);
      if (m === 'match') return 'http';
      if (m === 'prefix') possible = true;
    }
  }
  return possible ? 'undecided' : 'unknown';
}

function matchOpening(data: Buffer, opening: Buffer): 'match' | 'prefix' | 'no' {
  const n = Math.min(data.length, opening.length);
  if (data.compare(opening, 0, n, 0, n) !== 0) return 'no';
  return data.length >= opening.length ? 'match' : 'prefix';
}
