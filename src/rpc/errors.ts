// The one error type methods throw. It carries the code the client sees; anything else thrown
// becomes -32603 with no internals (see registry.ts).
import { JSONRPCErrorException } from 'json-rpc-2.0';
import { ErrorCode } from '../wire.js';

export class RpcError extends JSONRPCErrorException {
  constructor(code: number, message: string, data?: unknown) {
    super(message, code, data);
    // The base class resets the prototype to its own; restore ours so `instanceof RpcError` works.
    Object.setPrototypeOf(this, RpcError.prototype);
    this.name = 'RpcError';
  }
}

export const invalidParams = (message: string, data?: unknown): RpcError =>
  new RpcError(ErrorCode.invalidParams, `Invalid params: ${message}`, data);

export const noSuchVm = (vmId: string): RpcError =>
  new RpcError(ErrorCode.noSuchVm, `Virtual machine does not exist: ${vmId}`);
