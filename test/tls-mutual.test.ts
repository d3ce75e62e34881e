// Mutual TLS on the real daemon: with --tls-cert/--tls-key/--tls-ca it serves wss:// and only a
// client whose certificate that CA signed gets through.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcClient } from '../src/client/rpcClient.js';
import { hasCommand, missing } from './helpers/prereq.js';
import { startDaemon, type RunningDaemon } from './helpers/daemon.js';
import { openPeer, pingsOnNewConnection } from './helpers/wsPeer.js';
import { makePki, type Pki } from './helpers/throwawayPki.js';

const NO_CHANNELS = '/nonexistent-vdsm-agentd-channels';

describe.skipIf(missing({ commands: ['openssl'] }))('mutual TLS', () => {
  let pki: Pki;
  // Made while the suite is collected, so its removal hook is registered (not when skipped).
  const made = hasCommand('openssl') ? makePki() : null;
  let d: RunningDaemon;
  const asClient = (pair: { cert: string; key: string }) => ({ tls: { ...pair, ca: pki.ca.cert } });
  const refusals = (): number => d.logs().filter((l) => l.msg === 'TLS handshake refused').length;

  beforeAll(async () => {
    pki = made!;
    d = await startDaemon([
      '--listen',
      '127.0.0.1:0',
      '--channels-dir',
      NO_CHANNELS,
      '--tls-cert',
      pki.server.cert,
      '--tls-key',
      pki.server.key,
      '--tls-ca',
      pki.ca.cert,
      // Shorter than the default 10 s, so the silent peer below is dropped in seconds.
      '--handshake-timeout',
      '3',
    ]);
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it('serves wss:// and answers a client whose certificate the CA signed', async () => {
    expect(d.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    expect(await pingsOnNewConnection(d.url, asClient(pki.client))).toBe(true);
    const opened = await d.waitForLog((l) => l.msg === 'connection opened');
    expect(opened.client).toBe('engine.test');
  });

  it.each([
    ['no certificate', () => ({}), /^no client certificate given$/],
    ['a self-signed certificate', () => pki.selfSigned, /client certificate refused: DEPTH_ZERO_SELF_SIGNED_CERT/],
    [
      'a certificate from another CA',
      () => pki.otherCaClient,
      /client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
    ],
  ])('refuses a client with %s, and still serves the good one', async (_what, pair, reason) => {
    const before = refusals();
    const p = pair() as { cert?: string; key?: string };
    // The client trusts the daemon's CA, so only its own certificate can be the reason for refusal.
    const options = {
      ca: readFileSync(pki.ca.cert),
      ...(p.cert ? { cert: readFileSync(p.cert), key: readFileSync(p.key!) } : {}),
    };
    await expect(openPeer(d.url, options)).rejects.toThrow();
    await expect.poll(refusals).toBe(before + 1);
    const refused = d
      .logs()
      .filter((l) => l.msg === 'TLS handshake refused')
      .at(-1)!;
    expect(refused.reason).toMatch(reason);
    expect(refused.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await pingsOnNewConnection(d.url, asClient(pki.client))).toBe(true);
  });

  it('drops a peer that connects and never starts the TLS handshake (after --handshake-timeout)', async () => {
    const failed = (): number => d.logs().filter((l) => l.msg === 'TLS handshake failed').length;
    const before = failed();
    const socket = net.connect(Number(new URL(d.url).port), '127.0.0.1');
    socket.on('error', () => {});
    await new Promise((r) => socket.once('close', r));
    await expect.poll(failed).toBe(before + 1);
    expect(await pingsOnNewConnection(d.url, asClient(pki.client))).toBe(true);
  });

  it('does not speak plain ws:// on its TLS port', async () => {
    await expect(RpcClient.connect(d.url.replace(/^wss/, 'ws'))).rejects.toThrow();
    await d.waitForLog((l) => l.msg === 'TLS handshake failed');
    expect(await pingsOnNewConnection(d.url, asClient(pki.client))).toBe(true);
  });
});
