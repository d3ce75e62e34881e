// MethodRegistry as the method modules use it (VM.getStats, Host.getRoute and the event methods
// plug in the same way): declared params bound and checked, expected errors passed through with
// their code, anything else turned into -32603 without internals (but logged).
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RpcError, noSuchVm } from '../src/rpc/errors.js';
import { string, uuid } from '../src/rpc/params.js';
import { MethodRegistry, type MethodDef, type Session } from '../src/rpc/registry.js';

const VM = '6f1c0e3a-8f5e-4c9b-9d7e-2b1a4c3d5e6f';

function registry(defs: MethodDef[]): { reg: MethodRegistry; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  const reg = new MethodRegistry(pino({ level: 'debug' }, sink));
  reg.add(defs);
  return { reg, logs };
}

const session: Session = { id: 1, peer: 'test', subscribeEvents: () => {}, unsubscribeEvents: () => {} };
const call = (reg: MethodRegistry, method: string, params?: unknown) =>
  reg.handle({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) }, session, {
    maxBatch: 100,
  });

describe('MethodRegistry', () => {
  const { reg, logs } = registry([
    {
      name: 'VM.getStats',
      aliases: ['getVmStats'],
      params: [{ name: 'vmID', required: true, check: uuid }],
      handler: (p) => {
        if (p.vmID !== VM) throw noSuchVm(p.vmID as string);
        return [{ vmId: p.vmID }];
      },
    },
    { name: 'Test.nothing', params: [], handler: () => undefined },
    { name: 'Test.null', params: [], handler: () => null },
    {
      name: 'Test.boom',
      params: [],
      handler: () => {
        throw new Error('secret detail at /srv/x.js:1');
      },
    },
    { name: 'Test.asyncBoom', params: [], handler: async () => Promise.reject(new TypeError('secret async detail')) },
    {
      name: 'Test.withData',
      params: [{ name: 'ip', required: false, check: string }],
      handler: () => {
        throw new RpcError(1201, 'No route to 192.0.2.1: Network unreachable', { errno: 'ENETUNREACH' });
      },
    },
  ]);

  it('binds a declared param by name and by position, normalised by its check', async () => {
    expect(await call(reg, 'VM.getStats', { vmID: VM })).toEqual({ jsonrpc: '2.0', id: 1, result: [{ vmId: VM }] });
    expect(await call(reg, 'getVmStats', [VM.toUpperCase()])).toEqual({
      jsonrpc: '2.0',
      id: 1,
      result: [{ vmId: VM }],
    });
  });

  it.each([
    [{}, /'vmID' is missing/],
    [[], /'vmID' is missing/],
    [{ vmID: 'not-a-uuid' }, /'vmID' is not a UUID: "not-a-uuid"/],
    [{ vmID: 42 }, /'vmID' must be a UUID string, got number/],
    [[VM, VM], /at most 1 positional param/],
    [{ vmID: VM, extra: 1 }, /unknown param 'extra'; expected 'vmID'/],
  ])('answers -32602 naming the param and why: %j', async (params, why) => {
    const reply = (await call(reg, 'VM.getStats', params)) as { error: { code: number; message: string } };
    expect(reply.error.code).toBe(-32602);
    expect(reply.error.message).toMatch(why);
  });

  it("passes a method's own error through with its code, message and data", async () => {
    expect(await call(reg, 'VM.getStats', { vmID: '00000000-0000-4000-8000-000000000000' })).toEqual({
      jsonrpc: '2.0',
      id: 1,
      error: { code: 1, message: 'Virtual machine does not exist: 00000000-0000-4000-8000-000000000000' },
    });
    expect(await call(reg, 'Test.withData')).toEqual({
      jsonrpc: '2.0',
      id: 1,
      error: { code: 1201, message: 'No route to 192.0.2.1: Network unreachable', data: { errno: 'ENETUNREACH' } },
    });
  });

  it('turns anything unexpected into -32603 without internals, and logs it', async () => {
    for (const method of ['Test.boom', 'Test.asyncBoom']) {
      const reply = await call(reg, method);
      expect(reply).toEqual({ jsonrpc: '2.0', id: 1, error: { code: -32603, message: 'Internal error' } });
    }
    const errors = logs.filter((l) => l.level === 50);
    expect(errors.map((l) => (l.err as { message: string }).message)).toEqual([
      'secret detail at /srv/x.js:1',
      'secret async detail',
    ]);
  });

  it('answers true for a method that returns nothing, as VDSM does, and keeps null', async () => {
    expect(await call(reg, 'Test.nothing')).toEqual({ jsonrpc: '2.0', id: 1, result: true });
    expect(await call(reg, 'Test.null')).toEqual({ jsonrpc: '2.0', id: 1, result: null });
  });

  it('sends nothing for a notification, even one whose method fails', async () => {
    expect(await reg.handle({ jsonrpc: '2.0', method: 'Test.boom' }, session, { maxBatch: 100 })).toBeNull();
    expect(
      await reg.handle({ jsonrpc: '2.0', method: 'VM.getStats', params: {} }, session, { maxBatch: 100 }),
    ).toBeNull();
  });

  it('refuses to register a name twice', () => {
    expect(() => reg.add([{ name: 'getVmStats', params: [], handler: () => true }])).toThrow(/registered twice/);
  });
});
