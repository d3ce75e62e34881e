// The method table. Each method module (methods/*.ts) declares its methods, aliases and params;
// the registry binds params, dispatches through json-rpc-2.0 and turns anything unexpected into
// -32603 without internals. Transports (WebSocket, and any later one) call `handle` with a parsed
// message and their Session, and get back what to send (or null for notifications only).
import {
  JSONRPCServer,
  JSONRPCErrorException,
  createJSONRPCErrorResponse,
  type JSONRPCRequest,
  type JSONRPCResponse,
} from 'json-rpc-2.0';
import type { Logger } from 'pino';
import { ErrorCode } from '../wire.js';
import { RpcError } from './errors.js';
import { bindParams, type ParamDecl } from './params.js';

/** What a method may know about the connection that called it. */
export interface Session {
  readonly id: number;
  readonly peer: string;
  /** Delivers events whose method starts with one of `prefixes` (all when null). */
  subscribeEvents(prefixes: string[] | null): void;
  unsubscribeEvents(): void;
}

export interface MethodDef {
  name: string;
  aliases?: readonly string[];
  params: readonly ParamDecl[];
  handler: (params: Record<string, unknown>, session: Session) => unknown;
}

export type Reply = JSONRPCResponse | JSONRPCResponse[] | null;

export interface HandleLimits {
  maxBatch: number;
}

export class MethodRegistry {
  private readonly server: JSONRPCServer<Session>;
  private readonly names: string[] = [];
  private held: Promise<void> | null = null;

  constructor(private readonly log: Logger) {
    this.server = new JSONRPCServer<Session>({
      errorListener: () => {
        /* logged in mapError with the method's name */
      },
    });
    // Name the method: a typo (Host.getAllVmStatz) is then obvious to whoever reads the error.
    this.server.handleMethodNotFound = (request) =>
      Promise.resolve(
        request.id === undefined
          ? null
          : createJSONRPCErrorResponse(
              request.id,
              ErrorCode.methodNotFound,
              `Method not found: ${request.method.slice(0, 100)}`,
            ),
      );
    this.server.mapErrorToJSONRPCErrorResponse = (id, error: unknown) => {
      if (error instanceof RpcError || error instanceof JSONRPCErrorException)
        return createJSONRPCErrorResponse(id, error.code, error.message, error.data);
      this.log.error({ err: error }, 'method failed unexpectedly');
      return createJSONRPCErrorResponse(id, ErrorCode.internalError, 'Internal error');
    };
  }

  add(defs: readonly MethodDef[]): void {
    for (const def of defs) {
      for (const name of [def.name, ...(def.aliases ?? [])]) {
        if (this.server.hasMethod(name)) throw new Error(`method ${name} registered twice`);
        // VDSM answers `true` for a verb that returns nothing; JSON-RPC needs a result member.
        this.server.addMethod(name, async (params, session) => {
          const result = await def.handler(bindParams(params, def.params), session);
          return result === undefined ? true : result;
        });
        this.names.push(name);
      }
    }
  }

  methodNames(): readonly string[] {
    return this.names;
  }

  /** Tells `observer` about every dispatched request: its method, error code (null: ok), seconds. */
  observe(observer: (method: string, errorCode: number | null, seconds: number) => void): void {
    this.server.applyMiddleware(async (next, request, session) => {
      const started = process.hrtime.bigint();
      const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
      try {
        const response = await next(request, session);
        observer(request.method, response?.error?.code ?? null, seconds());
        return response;
      } catch (err) {
        // Mapped to the reply after this (mapErrorToJSONRPCErrorResponse): the same code here.
        const known = err instanceof RpcError || err instanceof JSONRPCErrorException;
        observer(request.method, known ? err.code : ErrorCode.internalError, seconds());
        throw err;
      }
    });
  }

  /**
   * Requests wait until `until` settles. The daemon binds its port first (so a taken port fails
   * before any other work), then learns the VMs already present; nobody gets a partial VM list.
   */
  holdUntil(until: Promise<unknown>): void {
    const held: Promise<void> = until.then(
      () => {},
      () => {},
    );
    this.held = held;
    void held.then(() => {
      if (this.held === held) this.held = null;
    });
  }

  /**
   * Handles one parsed message (request, notification or batch). `invalid` messages are answered
   * here per JSON-RPC 2.0, so the library only ever sees well-formed requests.
   */
  async handle(message: unknown, session: Session, limits: HandleLimits): Promise<Reply> {
    if (this.held) await this.held;
    if (Array.isArray(message)) {
      if (message.length === 0) return invalidRequest(null, 'empty batch');
      if (message.length > limits.maxBatch) {
        return invalidRequest(null, `batch of ${message.length} requests exceeds the limit of ${limits.maxBatch}`);
      }
      const replies = await Promise.all(message.map((m) => this.handleOne(m, session)));
      const sent = replies.filter((r): r is JSONRPCResponse => r !== null);
      return sent.length ? sent : null; // a batch of notifications only gets nothing back
    }
    return this.handleOne(message, session);
  }

  private async handleOne(message: unknown, session: Session): Promise<JSONRPCResponse | null> {
    const problem = envelopeProblem(message);
    if (problem) {
      const id = idOf(message);
      return invalidRequest(id, problem);
    }
    return this.server.receive(message as JSONRPCRequest, session);
  }
}

/** Requests in a message: what counts against the in-flight limit. */
export function requestCount(message: unknown): number {
  return Array.isArray(message) ? message.length : 1;
}

/**
 * The reply to a message refused as a whole (e.g. over the in-flight limit): the same error for
 * every request in it, with its id; notifications get nothing, as JSON-RPC 2.0 requires.
 */
export function refuseAll(message: unknown, code: number, text: string): Reply {
  const one = (m: unknown): JSONRPCResponse | null =>
    envelopeProblem(m) === null && !('id' in (m as object)) ? null : createJSONRPCErrorResponse(idOf(m), code, text);
  if (!Array.isArray(message)) return one(message);
  const replies = message.map(one).filter((r): r is JSONRPCResponse => r !== null);
  return replies.length ? replies : null;
}

function idOf(message: unknown): string | number | null {
  if (message && typeof message === 'object' && !Array.isArray(message)) {
    const id = (message as { id?: unknown }).id;
    if (typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))) return id;
  }
  return null;
}

/** Pure check of a request object's envelope (JSON-RPC 2.0 section 4). */
export function envelopeProblem(message: unknown): string | null {
  if (message === null || typeof message !== 'object' || Array.isArray(message))
    return 'a request must be a JSON object';
  const m = message as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') return '\'jsonrpc\' must be exactly "2.0"';
  if (typeof m.method !== 'string') return "'method' must be a string";
  if ('id' in m && !(m.id === null || typeof m.id === 'string' || typeof m.id === 'number')) {
    return "'id' must be a string, a number or null";
  }
  if ('params' in m && (m.params === null || typeof m.params !== 'object'))
    return "'params' must be an object or an array";
  return null;
}

function invalidRequest(id: string | number | null, why: string): JSONRPCResponse {
  return createJSONRPCErrorResponse(id, ErrorCode.invalidRequest, `Invalid Request: ${why}`);
}

export function errorReply(id: string | number | null, code: number, message: string, data?: unknown): JSONRPCResponse {
  return createJSONRPCErrorResponse(id, code, message, data);
}
