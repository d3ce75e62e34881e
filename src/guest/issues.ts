// Stable, machine-readable codes for everything the guest-facing code drops, replaces or fails
// on. Logs carry them as `code`, tests assert on them, and per-VM counters are keyed by them, so
// a code never changes meaning once released (in the manner of ws's WS_ERR_* codes).
export const GuestIssue = {
  /** A line passed the 1 MiB cap; it was dropped whole and reading resumed after the next newline. */
  lineTooLong: 'GUEST_ERR_LINE_TOO_LONG',
  /** A line was not valid JSON. */
  badJson: 'GUEST_ERR_BAD_JSON',
  /** A message was valid JSON but not an object (array, string, number, null). */
  notObject: 'GUEST_ERR_NOT_OBJECT',
  /** An oVirt message without a string `__name__`. */
  noName: 'GUEST_ERR_NO_NAME',
  /** An oVirt message name this daemon does not use (counted, not warned about). */
  unknownMessage: 'GUEST_ERR_UNKNOWN_MESSAGE',
  /** A known message whose payload has the wrong type (e.g. `interfaces` not an array). */
  badField: 'GUEST_ERR_BAD_FIELD',
  /** Invalid UTF-8 or a control character was replaced with U+FFFD. */
  textReplaced: 'GUEST_ERR_TEXT_REPLACED',
  /** A name or text field was cut to its length cap. */
  textTruncated: 'GUEST_ERR_TEXT_TRUNCATED',
  /** A MAC that is not 6 or 20 colon-separated hex octets was reported as "". */
  badMac: 'GUEST_ERR_BAD_MAC',
  /** A string that is not an IP literal of the list's family was dropped from inet/inet6. */
  badAddress: 'GUEST_ERR_BAD_ADDRESS',
  /** Interfaces past the per-VM cap were dropped. */
  tooManyInterfaces: 'GUEST_ERR_TOO_MANY_INTERFACES',
  /** Addresses past the per-interface cap were dropped. */
  tooManyAddresses: 'GUEST_ERR_TOO_MANY_ADDRESSES',
  /** A message arrived while the VM's rate budget was spent; it was dropped unread. */
  rateLimited: 'GUEST_ERR_RATE_LIMITED',
  /** qemu-ga answered a command with `{"error": ...}`. */
  qgaError: 'GUEST_ERR_QGA_ERROR',
  /** qemu-ga sent a reply that is neither `return` nor `error`, or one nobody waited for. */
  qgaUnexpectedReply: 'GUEST_ERR_QGA_UNEXPECTED_REPLY',
  /** A qemu-ga command (or the resync) got no answer within the timeout. */
  qgaTimeout: 'GUEST_ERR_QGA_TIMEOUT',
} as const;

/** Codes of log lines about channels rather than about one bad input. */
export const ChannelLogCode = {
  /** The socket could not be connected (refused, missing, timed out); retried with backoff. */
  unavailable: 'GUEST_ERR_CHANNEL_UNAVAILABLE',
  /** An established connection failed. */
  failed: 'GUEST_ERR_CHANNEL_FAILED',
  /** Our protocol handler threw on guest input: that connection is dropped and reconnected. */
  handlerFailed: 'GUEST_ERR_HANDLER_FAILED',
  /** Summary of a VM's warnings that the rate limit held back. */
  warningsSuppressed: 'GUEST_WARNINGS_SUPPRESSED',
  /** --qga-via libvirt without a libvirt transport: qemu-ga sockets are left alone. */
  qgaLibvirtUnavailable: 'GUEST_ERR_QGA_LIBVIRT_UNAVAILABLE',
} as const;

export type GuestIssueCode = (typeof GuestIssue)[keyof typeof GuestIssue];

/** Issues found while reading one message: code -> how many times. */
export type IssueCounts = Map<GuestIssueCode, number>;

/** No issues, shared by whatever keeps an empty set for long (an empty Map is ~0.1 KiB): never modified. */
export const NO_ISSUES: IssueCounts = new Map();

export function noteIssue(issues: IssueCounts, code: GuestIssueCode, n = 1): void {
  if (n > 0) issues.set(code, (issues.get(code) ?? 0) + n);
}
