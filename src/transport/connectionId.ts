// One id space for every client connection, whatever its transport: the event hub and the logs
// key connections by this id, so a WebSocket and a STOMP connection must never share one.
let next = 1;

export function nextConnectionId(): number {
  return next++;
}
