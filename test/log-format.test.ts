// The log as the reader gets it: JSON lines with level names; pino-pretty text with
// --log-format text; under journald (JOURNAL_STREAM naming stdout) each line starts with its
// syslog priority, which journald strips and files (the packaged-daemon test reads it back
// with `journalctl -p`).
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DAEMON, runDaemonExpectingExit } from './helpers/daemon.js';
import { atFileEnd } from './helpers/fileCleanup.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vdsm-agentd-logs-'));
atFileEnd(() => rmSync(dir, { recursive: true, force: true }));
let runs = 0;

/**
 * Runs the daemon with stdout on a file (as journald's stream is a socket, a file has a device
 * and inode too), until it listens; then SIGTERM. Returns its stdout lines.
 */
async function run(args: string[], env: (stdout: string) => Record<string, string> = () => ({})): Promise<string[]> {
  const out = path.join(dir, `stdout-${++runs}`);
  const fd = openSync(out, 'w');
  const st = statSync(out);
  const proc = spawn(
    process.execPath,
    [DAEMON, '--listen', '127.0.0.1:0', '--channels-dir', path.join(dir, 'missing'), '--qga-via', 'direct', ...args],
    {
      env: { ...process.env, ...env(`${st.dev}:${st.ino}`) },
      stdio: ['ignore', fd, 'pipe'],
    },
  );
  closeSync(fd);
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    await expect.poll(() => readFileSync(out, 'utf8'), { timeout: 15_000 }).toMatch(/listening on/);
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
  return readFileSync(out, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
}

describe('log lines', () => {
  it('are JSON with level names, not numbers', async () => {
    const lines = (await run([])).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'channels directory is missing; waiting for it to appear'],
      ['info', expect.stringMatching(/^listening on ws:\/\/127\.0\.0\.1:\d+$/)],
      ['info', 'shutting down'],
      ['info', 'stopped'],
    ]);
  });

  it('carry their syslog priority when stdout is the stream JOURNAL_STREAM names', async () => {
    const lines = await run([], (stream) => ({ JOURNAL_STREAM: stream }));
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<4>', '<6>', '<6>', '<6>']);
    expect(JSON.parse(lines[0]!.slice(3))).toMatchObject({
      level: 'warn',
      msg: 'channels directory is missing; waiting for it to appear',
    });
  });

  it('carry no prefix when JOURNAL_STREAM names another stream (inherited by a child whose stdout went elsewhere)', async () => {
    const lines = await run([], () => ({ JOURNAL_STREAM: '1:1' }));
    expect(lines.every((l) => l.startsWith('{"level":"'))).toBe(true);
  });

  it('are pino-pretty text with --log-format text, with the priority under journald', async () => {
    const text = await run(['--log-format', 'text']);
    expect(text[0]).toMatch(
      /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] WARN: channels directory is missing; waiting for it to appear \{.*"errno":"ENOENT"/,
    );
    expect(text[1]).toMatch(/^\[.*\] INFO: listening on ws:\/\/127\.0\.0\.1:\d+ /);
    const journal = await run(['--log-format', 'text'], (stream) => ({ JOURNAL_STREAM: stream }));
    expect(journal[0]).toMatch(/^<4>\[.*\] WARN: channels directory is missing/);
  });

  it('are JSON with --log-format auto when stdout is not a terminal', async () => {
    const lines = await run(['--log-format', 'auto']);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn' });
  });

  it('refuses an unknown format at start-up in one line', async () => {
    const r = await runDaemonExpectingExit(['--log-format', 'xml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("vdsm-agentd: error: --log-format: expected json, text or auto, got 'xml'\n");
  });
});
