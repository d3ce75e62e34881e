// The libvirt transport without libvirtd: the XDR codec and framing, URI handling, the failure
// classification, and the client against a scripted libvirtd on a real UNIX socket (auth order,
// keepalive, a call that is never answered, libvirtd going away and coming back, garbage).
import net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { LibvirtCallError, LibvirtClient, LibvirtUnavailableError, libvirtTarget } from '../src/libvirt/client.js';
import { EventEmitter } from 'node:events';
import { LibvirtQgaLink, LibvirtRouteDecider, classifyLibvirtFailure } from '../src/libvirt/agentLink.js';
import { QgaCommandError } from '../src/guest/qgaLink.js';
import {
  LIBVIRT,
  MessageFramer,
  VirErr,
  XdrError,
  XdrReader,
  XdrWriter,
  decodeAgentCommand,
  decodeDomain,
  decodeError,
  encodeAgentCommand,
  encodeCall,
  encodeLookupByUuid,
  encodeMessage,
  type Message,
} from '../src/libvirt/wire.js';
import { tempDir } from './helpers/channelsDir.js';
import { eventually } from './helpers/scriptedGuest.js';

const UUID = '4d736c0a-5ce8-45e3-a058-ea16b22fbb5e';
const silent = pino({ level: 'silent' });

describe('libvirt wire format', () => {
  it('a call is the length word (counting itself), six header words, then the XDR body', () => {
    const body = new XdrWriter().string('abcde').bytes();
    const msg = encodeCall(LIBVIRT.qemuProgram, LIBVIRT.proc.agentCommand, 7, body);
    expect(msg.length).toBe(4 + 24 + 12); // "abcde" is 4 (length) + 5 + 3 padding
    const r = new XdrReader(msg);
    expect([r.u32(), r.u32(), r.u32(), r.i32(), r.i32(), r.u32(), r.i32()]).toEqual([40, 0x20008087, 1, 3, 0, 7, 0]);
    expect(r.string()).toBe('abcde');
    expect(r.remaining).toBe(0);
  });

  it('the agent command carries the domain (name, 16-byte UUID, id), the JSON, the timeout and flags', () => {
    const dom = decodeDomain(
      new XdrWriter()
        .string('vm1')
        .fixedOpaque(Buffer.from(UUID.replace(/-/g, ''), 'hex'))
        .i32(3)
        .bytes(),
    );
    expect(dom).toEqual({ name: 'vm1', uuid: Buffer.from('4d736c0a5ce845e3a058ea16b22fbb5e', 'hex'), id: 3 });
    const r = new XdrReader(encodeAgentCommand(dom, '{"execute":"guest-ping"}', 5));
    expect([r.string(), r.fixedOpaque(16).toString('hex'), r.i32(), r.string(), r.i32(), r.u32()]).toEqual([
      'vm1',
      '4d736c0a5ce845e3a058ea16b22fbb5e',
      3,
      '{"execute":"guest-ping"}',
      5,
      0,
    ]);
    expect(encodeLookupByUuid(UUID).toString('hex')).toBe('4d736c0a5ce845e3a058ea16b22fbb5e');
    expect(() => encodeLookupByUuid('not-a-uuid')).toThrow(XdrError);
    expect(decodeAgentCommand(new XdrWriter().optionalString('{"return":{}}').bytes())).toBe('{"return":{}}');
    expect(decodeAgentCommand(new XdrWriter().optionalString(null).bytes())).toBeNull();
  });

  it('the framer reassembles messages split anywhere and several in one chunk', () => {
    const a = encodeMessage({ prog: 1, vers: 1, proc: 2, type: 1, serial: 9, status: 0 }, Buffer.from([1, 2, 3, 4]));
    const b = encodeMessage({ prog: 1, vers: 1, proc: 3, type: 1, serial: 10, status: 1 }, Buffer.alloc(8));
    const all = Buffer.concat([a, b, a]);
    for (let step = 1; step <= all.length; step += 5) {
      const f = new MessageFramer();
      const got: Message[] = [];
      for (let i = 0; i < all.length; i += step) got.push(...f.push(all.subarray(i, i + step)));
      expect(got.map((m) => [m.header.serial, m.header.status, m.body.length])).toEqual([
        [9, 0, 4],
        [10, 1, 8],
        [9, 0, 4],
      ]);
    }
  });

  it('a length outside libvirt bounds and a truncated body are errors, not hangs or huge buffers', () => {
    expect(() => new MessageFramer().push(Buffer.from([0, 0, 0, 3]))).toThrow(XdrError);
    expect(() => new MessageFramer().push(Buffer.from([0x7f, 0xff, 0xff, 0xff]))).toThrow(/bad libvirt message length/);
    expect(() => new XdrReader(Buffer.from([0, 0, 0, 9, 1])).string()).toThrow(/truncated/);
  });

  it('a remote_error gives code, domain and message', () => {
    const body = new XdrWriter()
      .i32(42)
      .i32(10)
      .optionalString("Domain not found: no domain with matching uuid 'x'")
      .i32(2)
      .bytes();
    expect(decodeError(body)).toEqual({
      code: 42,
      domain: 10,
      message: "Domain not found: no domain with matching uuid 'x'",
    });
  });
});

describe('libvirt URIs', () => {
  it('maps local URIs to libvirtd socket and name; refuses remote transports', () => {
    expect(libvirtTarget('qemu:///system')).toMatchObject({
      name: 'qemu:///system',
      socketPath: expect.stringMatching(/^\/run\/libvirt\/(libvirt|virtqemud)-sock$/),
    });
    expect(libvirtTarget('qemu+unix:///system?socket=/tmp/x.sock')).toEqual({
      name: 'qemu:///system',
      socketPath: '/tmp/x.sock',
    });
    expect(libvirtTarget('qemu:///session', { XDG_RUNTIME_DIR: '/run/user/1000' }).socketPath).toMatch(
      /^\/run\/user\/1000\/libvirt\//,
    );
    expect(() => libvirtTarget('qemu+ssh://host/system')).toThrow(/only local URIs/);
    expect(() => libvirtTarget('qemu+tls://host/system')).toThrow(/only local URIs/);
    expect(() => libvirtTarget('not a uri')).toThrow(/not a URI/);
  });
});

describe('libvirt failures as agent status', () => {
  const call = (code: number, message: string): LibvirtCallError => new LibvirtCallError({ code, domain: 10, message });
  it.each([
    [call(VirErr.noDomain, 'Domain not found'), 'disconnected', 'LIBVIRT_ERR_NO_DOMAIN'],
    [
      call(VirErr.operationInvalid, 'Requested operation is not valid: domain is not running'),
      'disconnected',
      'LIBVIRT_ERR_DOMAIN_NOT_RUNNING',
    ],
    [
      call(VirErr.agentUnresponsive, 'Guest agent is not responding: QEMU guest agent is not connected'),
      'disconnected',
      'LIBVIRT_ERR_AGENT_NOT_CONNECTED',
    ],
    [
      call(
        VirErr.agentUnresponsive,
        'Guest agent is not responding: QEMU guest agent is not available due to an error',
      ),
      'disconnected',
      'LIBVIRT_ERR_AGENT_NOT_CONNECTED',
    ],
    [
      call(VirErr.agentUnresponsive, 'Guest agent is not responding: Guest agent not available for now'),
      'timeout',
      'LIBVIRT_ERR_AGENT_UNRESPONSIVE',
    ],
    [
      call(VirErr.operationTimeout, 'Timed out during operation: cannot acquire state change lock'),
      'timeout',
      'LIBVIRT_ERR_TIMEOUT',
    ],
    [call(1, 'internal error'), 'disconnected', 'LIBVIRT_ERR_1'],
    [
      new LibvirtUnavailableError('cannot connect to /run/libvirt/libvirt-sock: ENOENT'),
      'disconnected',
      'LIBVIRT_ERR_UNAVAILABLE',
    ],
    [new LibvirtUnavailableError('libvirtd did not answer within 15000 ms', true), 'timeout', 'LIBVIRT_ERR_TIMEOUT'],
    [new Error('boom'), 'disconnected', 'LIBVIRT_ERR_UNEXPECTED'],
  ])('%s -> %s %s', (err, kind, code) => {
    expect(classifyLibvirtFailure(err)).toMatchObject({ kind, code });
  });
});

/** A scripted libvirtd: answers the handshake, then whatever `onCall` says. */
class FakeLibvirtd {
  readonly server: net.Server;
  readonly calls: { prog: number; proc: number; body: Buffer }[] = [];
  readonly sockets = new Set<net.Socket>();
  readonly pongs: number[] = [];
  auth: number[] = [LIBVIRT.auth.none];
  onCall: (prog: number, proc: number, body: Buffer) => Buffer | { error: number; message: string } | 'silence' = () =>
    Buffer.alloc(0);

  constructor(readonly path: string) {
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      const framer = new MessageFramer();
      s.on('data', (chunk: Buffer) => {
        for (const m of framer.push(chunk)) this.handle(s, m);
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(this.path, r));
  }

  private handle(s: net.Socket, m: Message): void {
    const h = m.header;
    if (h.prog === LIBVIRT.keepaliveProgram) {
      this.pongs.push(h.proc);
      return;
    }
    this.calls.push({ prog: h.prog, proc: h.proc, body: m.body });
    let out: Buffer | { error: number; message: string } | 'silence';
    if (h.prog === LIBVIRT.remoteProgram && h.proc === LIBVIRT.proc.authList) {
      const w = new XdrWriter().u32(this.auth.length);
      for (const a of this.auth) w.i32(a);
      out = w.bytes();
    } else if (
      h.prog === LIBVIRT.remoteProgram &&
      (h.proc === LIBVIRT.proc.authPolkit || h.proc === LIBVIRT.proc.connectOpen)
    ) {
      out = h.proc === LIBVIRT.proc.authPolkit ? new XdrWriter().i32(1).bytes() : Buffer.alloc(0);
    } else if (h.prog === LIBVIRT.remoteProgram && h.proc === LIBVIRT.proc.connectDomainEventCallbackRegisterAny) {
      this.eventSockets.add(s);
      out = new XdrWriter().i32(this.calls.length).bytes();
    } else if (h.prog === LIBVIRT.remoteProgram && h.proc === LIBVIRT.proc.domainLookupByUuid) {
      out = new XdrWriter().string('vm1').fixedOpaque(m.body.subarray(0, 16)).i32(1).bytes();
    } else out = this.onCall(h.prog, h.proc, m.body);
    if (out === 'silence') return;
    const reply = { prog: h.prog, vers: 1, proc: h.proc, type: LIBVIRT.type.reply, serial: h.serial };
    if (Buffer.isBuffer(out)) s.write(encodeMessage({ ...reply, status: LIBVIRT.status.ok }, out));
    else
      s.write(
        encodeMessage(
          { ...reply, status: LIBVIRT.status.error },
          new XdrWriter().i32(out.error).i32(10).optionalString(out.message).i32(2).bytes(),
        ),
      );
  }

  /** The connections that registered domain events: a server-sent MESSAGE goes to them. */
  readonly eventSockets = new Set<net.Socket>();

  sendEvent(proc: number, body: Buffer): void {
    for (const s of this.eventSockets)
      s.write(
        encodeMessage(
          { prog: LIBVIRT.remoteProgram, vers: 1, proc, type: LIBVIRT.type.message, serial: 0, status: 0 },
          body,
        ),
      );
  }

  ping(): void {
    for (const s of this.sockets)
      s.write(
        encodeMessage({
          prog: LIBVIRT.keepaliveProgram,
          vers: 1,
          proc: LIBVIRT.proc.ping,
          type: LIBVIRT.type.message,
          serial: 0,
          status: 0,
        }),
      );
  }

  /** libvirtd going away: every connection dropped, the socket gone. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

describe('libvirt client against a scripted libvirtd', () => {
  const clients: LibvirtClient[] = [];
  const fakes: FakeLibvirtd[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.stop();
    for (const f of fakes.splice(0)) if (f.server.listening) await f.stop();
  });

  async function setup(
    auth: number[] = [LIBVIRT.auth.none],
  ): Promise<{ fake: FakeLibvirtd; client: LibvirtClient; sock: string }> {
    const sock = path.join(tempDir('vdsm-fake-libvirt-'), 'libvirt-sock');
    const fake = new FakeLibvirtd(sock);
    fake.auth = auth;
    fakes.push(fake);
    await fake.listen();
    const client = new LibvirtClient({
      uri: `qemu+unix:///system?socket=${sock}`,
      log: silent,
      connections: 2,
      callTimeoutMs: 500,
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    clients.push(client);
    await client.start();
    return { fake, client, sock };
  }

  it('handshakes as the remote driver does (auth list, polkit when asked, open qemu:///system) on each connection', async () => {
    const { fake, client } = await setup([LIBVIRT.auth.polkit]);
    expect(client.state).toBe('up');
    // Then the domain events (lifecycle, device added, device removed) on the first connection.
    expect(fake.calls.map((c) => c.proc)).toEqual([66, 70, 1, 66, 70, 1, 316, 316, 316]);
    expect(fake.calls.slice(6).map((c) => new XdrReader(c.body).i32())).toEqual([0, 19, 15]);
    expect(client.events).toBe(true);
    expect(new XdrReader(fake.calls[2]!.body).optionalString()).toBe('qemu:///system');
  });

  it('an agent command: lookup once (cached), then the QEMU program call; the reply text comes back', async () => {
    const { fake, client } = await setup();
    fake.onCall = (prog, proc) =>
      prog === LIBVIRT.qemuProgram && proc === LIBVIRT.proc.agentCommand
        ? new XdrWriter().optionalString('{"return":{"host-name":"vm1"}}').bytes()
        : Buffer.alloc(0);
    expect(await client.agentCommand(UUID, '{"execute":"guest-get-host-name"}', 1500)).toBe(
      '{"return":{"host-name":"vm1"}}',
    );
    await client.agentCommand(UUID, '{"execute":"guest-get-host-name"}', 1500);
    const after = fake.calls.slice(7).map((c) => [c.prog, c.proc]);
    expect(after).toEqual([
      [LIBVIRT.remoteProgram, 24],
      [LIBVIRT.qemuProgram, 3],
      [LIBVIRT.qemuProgram, 3],
    ]);
    const r = new XdrReader(fake.calls[8]!.body);
    expect([r.string(), r.fixedOpaque(16).length, r.i32(), r.string(), r.i32()]).toEqual([
      'vm1',
      16,
      1,
      '{"execute":"guest-get-host-name"}',
      2,
    ]);
  });

  it('a VM whose agent hangs does not hold up another VM: calls are in flight together, answered by serial', async () => {
    const { fake, client } = await setup();
    const other = '00000000-0000-4000-8000-000000000002';
    fake.onCall = (_prog, _proc, body) => {
      const r = new XdrReader(body);
      r.string(); // the domain's name, then its UUID
      return r.fixedOpaque(16).toString('hex') === UUID.replace(/-/g, '')
        ? 'silence'
        : new XdrWriter().optionalString('{"return":{}}').bytes();
    };
    const hung = client.agentCommand(UUID, '{"execute":"guest-ping"}', 1000).catch((e: unknown) => e);
    for (let i = 0; i < 5; i++)
      expect(await client.agentCommand(other, '{"execute":"guest-ping"}', 1000)).toBe('{"return":{}}');
    expect(await hung).toBeInstanceOf(LibvirtUnavailableError); // its own timeout, later
  });

  it('answers keepalive pings', async () => {
    const { fake } = await setup();
    fake.ping();
    await eventually(
      () => fake.pongs,
      (p) => p.length === 2,
      2000,
      'pongs',
    );
    expect(fake.pongs).toEqual([LIBVIRT.proc.pong, LIBVIRT.proc.pong]);
  });

  it('a call libvirtd never answers times out instead of hanging', async () => {
    const { fake, client } = await setup();
    fake.onCall = () => 'silence';
    const err = await client.agentCommand(UUID, '{"execute":"guest-ping"}', 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtUnavailableError);
    expect(classifyLibvirtFailure(err)).toMatchObject({ kind: 'timeout' });
  });

  it('libvirtd going away fails calls at once; it is reconnected when it is back', async () => {
    const { fake, client, sock } = await setup();
    const states: string[] = [];
    client.on('state', (s: string) => states.push(s));
    fake.onCall = () => 'silence';
    const pending = client.agentCommand(UUID, '{"execute":"guest-ping"}', 5000).catch((e: unknown) => e);
    await eventually(
      () => fake.calls.some((c) => c.prog === LIBVIRT.qemuProgram),
      (x) => x,
      2000,
      'call sent',
    );
    await fake.stop();
    expect(await pending).toBeInstanceOf(LibvirtUnavailableError);
    await eventually(
      () => client.state,
      (s) => s === 'down',
      2000,
      'down',
    );
    await expect(client.agentCommand(UUID, '{"execute":"guest-ping"}', 1000)).rejects.toThrow(LibvirtUnavailableError);
    const again = new FakeLibvirtd(sock);
    fakes.push(again);
    again.onCall = () => new XdrWriter().optionalString('{"return":{}}').bytes();
    await again.listen();
    await eventually(
      () => client.state,
      (s) => s === 'up',
      5000,
      'up again',
    );
    expect(await client.agentCommand(UUID, '{"execute":"guest-ping"}', 1000)).toBe('{"return":{}}');
    expect(states).toEqual(['down', 'up']);
  });

  it('garbage from libvirtd drops the connection and the client reconnects', async () => {
    const { fake, client } = await setup();
    for (const s of fake.sockets) s.write(Buffer.from([0, 0, 0, 1, 0xde, 0xad]));
    await eventually(
      () => client.state,
      (s) => s === 'up' && fake.calls.filter((c) => c.proc === 66).length >= 4,
      5000,
      'reconnected',
    );
  });

  it('the QgaLink maps replies with the shared parser and libvirt errors to failure kinds, one warning per cause', async () => {
    const { fake, client } = await setup();
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const notes: string[] = [];
    const link = new LibvirtQgaLink(client, UUID, log, (issues) => notes.push(...issues.keys()));
    let reply: Buffer | { error: number; message: string } = new XdrWriter()
      .optionalString('{"return":[{"name":"lo"}]}')
      .bytes();
    fake.onCall = () => reply;
    expect(await link.ask('guest-network-get-interfaces', undefined, 1000)).toEqual([{ name: 'lo' }]);
    reply = new XdrWriter()
      .optionalString('{"error":{"class":"CommandNotFound","desc":"The command guest-bogus has not been found"}}')
      .bytes();
    await expect(link.ask('guest-bogus', undefined, 1000)).rejects.toMatchObject({
      kind: 'agent',
      errorClass: 'CommandNotFound',
    });
    // A reply over the line cap of the socket path is dropped here too (libvirt passes up to 10 MiB).
    reply = new XdrWriter().optionalString(`{"return":"${'x'.repeat(1024 * 1024)}"}`).bytes();
    await expect(link.ask('guest-get-host-name', undefined, 1000)).rejects.toMatchObject({ kind: 'agent' });
    expect(notes).toEqual(['GUEST_ERR_LINE_TOO_LONG']);
    reply = {
      error: VirErr.agentUnresponsive,
      message: 'Guest agent is not responding: QEMU guest agent is not connected',
    };
    for (let i = 0; i < 3; i++) {
      const e = await link.ask('guest-get-host-name', undefined, 1000).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(QgaCommandError);
      expect((e as QgaCommandError).kind).toBe('disconnected');
    }
    expect(lines.filter((l) => l.code === 'LIBVIRT_ERR_AGENT_NOT_CONNECTED')).toHaveLength(1);
    reply = new XdrWriter().optionalString('{"return":{"host-name":"vm1"}}').bytes();
    expect(await link.ask('guest-get-host-name', undefined, 1000)).toEqual({ 'host-name': 'vm1' });
    expect(lines.some((l) => l.msg === 'qemu-ga through libvirt answers again')).toBe(true);
  });
});

describe('--qga-via auto, the per-VM decision', () => {
  /** Just what the decider reads of a client: its state, its events, hasDomain, forget. */
  class StubClient extends EventEmitter {
    state: 'up' | 'down' = 'up';
    known = new Set<string>();
    failing = false;
    hasDomain(uuid: string): Promise<boolean> {
      if (this.failing) return Promise.reject(new LibvirtUnavailableError('hiccup'));
      return Promise.resolve(this.known.has(uuid));
    }
    forget(): void {}
    set(state: 'up' | 'down'): void {
      this.state = state;
      this.emit('state', state);
    }
  }

  it('libvirt for domains libvirtd runs, direct for others; held on libvirt through a short libvirtd absence, then direct', async () => {
    const client = new StubClient();
    client.known.add('a');
    let now = 1_000;
    let expired = 0;
    const d = new LibvirtRouteDecider(
      client as unknown as LibvirtClient,
      30_000,
      () => expired++,
      () => now,
    );
    expect([await d.useLibvirt('a'), await d.useLibvirt('b')]).toEqual([true, false]);
    client.failing = true; // libvirtd hiccup: keep what was decided
    expect([await d.useLibvirt('a'), await d.useLibvirt('b')]).toEqual([true, false]);
    client.failing = false;
    client.set('down');
    now += 10_000;
    expect([await d.useLibvirt('a'), await d.useLibvirt('b')]).toEqual([true, false]);
    now += 25_000;
    expect(await d.useLibvirt('a')).toBe(false);
    client.set('up');
    expect(await d.useLibvirt('a')).toBe(true);
    d.stop();
    expect(expired).toBe(0); // the real timer was cancelled by 'up'
  });

  it('asks for a new decision when libvirtd stays away past the hold', async () => {
    const client = new StubClient();
    let expired = 0;
    const d = new LibvirtRouteDecider(client as unknown as LibvirtClient, 50, () => expired++);
    client.set('down');
    await eventually(
      () => expired,
      (n) => n === 1,
      2000,
      'hold expired',
    );
    d.stop();
  });
});
