// The README's flags table and config examples stay true: the table is what --help-markdown
// prints, and each config.json example there is accepted by the daemon's own loader.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, OPTIONS } from '../src/config.js';
import { DAEMON, ROOT } from './helpers/daemon.js';
import { hasCommand, missing } from './helpers/prereq.js';
import { makePki, type Pki } from './helpers/throwawayPki.js';

const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

function section(name: string): string {
  const m = new RegExp(`<!-- section:${name} -->([\\s\\S]*?)<!-- /section:${name} -->`).exec(README);
  if (!m) throw new Error(`README has no section ${name}`);
  return m[1]!;
}

function jsonBlocks(text: string): Record<string, unknown>[] {
  return [...text.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]!) as Record<string, unknown>);
}

describe('README', () => {
  it('shows exactly the flags table that node dist/main.js --help-markdown prints', () => {
    const m = /<!-- flags:begin[^>]*-->\n([\s\S]*?)\n<!-- flags:end -->/.exec(section('running'));
    expect(m).not.toBeNull();
    expect(m![1]).toBe(execFileSync(process.execPath, [DAEMON, '--help-markdown'], { encoding: 'utf8' }).trimEnd());
  });

  it('lists every config key in the systemd section', () => {
    const [full] = jsonBlocks(section('systemd'));
    expect(Object.keys(full!).sort()).toEqual(
      OPTIONS.map((o) => o.flag)
        .filter((f) => f !== 'config')
        .sort(),
    );
  });

  describe.skipIf(missing({ commands: ['openssl'] }))('config examples', () => {
    let pki: Pki;
    // Made while the suite is collected, so its removal hook is registered (not when skipped).
    const made = hasCommand('openssl') ? makePki() : null;
    const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-readme-'));
    beforeAll(() => {
      pki = made!;
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('are each accepted by the daemon, with the TLS paths pointing at real files', () => {
      const examples = [...jsonBlocks(section('running')), ...jsonBlocks(section('systemd'))];
      expect(examples.length).toBeGreaterThanOrEqual(2);
      examples.forEach((example, i) => {
        const real = { ...example, 'tls-cert': pki.server.cert, 'tls-key': pki.server.key, 'tls-ca': pki.ca.cert };
        const file = path.join(dir, `example-${i}.json`);
        writeFileSync(file, JSON.stringify(real));
        const c = loadConfig(['--config', file], {}, '/nonexistent');
        expect(c.configFile).toBe(file);
        expect(c.tls?.paths).toEqual({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert });
        expect(`${c.listen.host}:${c.listen.port}`).toBe(example.listen);
      });
    });
  });
});
