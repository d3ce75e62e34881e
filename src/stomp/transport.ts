// The two carriers of a STOMP session: a TCP/TLS socket, and a WebSocket that negotiated the
// subprotocol v12.stomp (one frame per message).
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { StompTransport } from './session.js';

export const STOMP_WS_PROTOCOL = 'v12.stomp';
const END_GRACE_MS = 2000;
/**
 * A peer that sends requests but does not read the answers: past this many unsent bytes we stop
 * reading from it (TCP pushes back on the peer) until it has taken half of them.
 */
const PAUSE_READING_AT = 1 << 20;

/**
 * The engine's client reads one frame per socket read: two frames in one write leave the
 * second unread, and anything after a NUL confuses it. So each frame is its own write, and
 * the next one starts only when the previous one reached the kernel.
 */
export class SocketTransport implements StompTransport {
  private readonly queue: { data: Buffer; written: (() => void) | undefined }[] = [];
  private queuedBytes = 0;
  private writing = false;
  private ending = false;
  /** Reading stops while either holds: the request pipeline is full, or our output piled up. */
  private inputHeld = false;
  private outputFull = false;

  constructor(
    private readonly socket: Socket,
    readonly peer: string,
  ) {
    socket.setNoDelay(true);
  }

  write(data: Buffer, written?: () => void): void {
    if (this.ending || this.socket.destroyed) return written?.();
    if (this.writing) {
      this.queue.push({ data, written });
      this.queuedBytes += data.length;
      if (this.bufferedBytes() > PAUSE_READING_AT) this.setOutputFull(true);
      return;
    }
    this.writeNow(data, written);
  }

  holdInput(hold: boolean): void {
    this.inputHeld = hold;
    this.syncReading();
  }

  private setOutputFull(full: boolean): void {
    this.outputFull = full;
    this.syncReading();
  }

  private syncReading(): void {
    if (this.socket.destroyed) return;
    if (this.inputHeld || this.outputFull) this.socket.pause();
    else if (!this.ending) this.socket.resume();
  }

  private writeNow(data: Buffer, written: (() => void) | undefined): void {
    this.writing = true;
    this.socket.write(data, (err) => {
      this.writing = false;
      written?.();
      if (err || this.socket.destroyed) {
        // Nothing more goes out: whoever waits for a queued frame is told now.
        for (const q of this.queue.splice(0)) q.written?.();
        return;
      }
      const next = this.queue.shift();
      if (next) this.queuedBytes -= next.data.length;
      if (this.outputFull && this.bufferedBytes() < PAUSE_READING_AT / 2) this.setOutputFull(false);
      if (next) this.writeNow(next.data, next.written);
      else if (this.ending) this.socket.end();
    });
  }

  bufferedBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  end(): void {
    if (this.ending) return;
    this.ending = true;
    // Frames already accepted still go out (a RECEIPT, an ERROR), then FIN.
    if (!this.writing) this.socket.end();
    setTimeout(() => this.socket.destroy(), END_GRACE_MS).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class WebSocketTransport implements StompTransport {
  constructor(
    private readonly ws: WebSocket,
    readonly peer: string,
  ) {}

  write(data: Buffer, written?: () => void): void {
    // STOMP frames and heart-beats are UTF-8 text: text messages, as stomp.js expects.
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary: false }, written && (() => written()));
    else written?.();
  }

  holdInput(hold: boolean): void {
    if (hold) this.ws.pause();
    else this.ws.resume();
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  end(): void {
    this.ws.close(1000);
    setTimeout(() => this.ws.terminate(), END_GRACE_MS).unref();
  }

  destroy(): void {
    this.ws.terminate();
  }
}
