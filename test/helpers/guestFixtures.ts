// Reads the captured guest-agent payloads in fixtures/ (parser unit tests and the fuzzer's seeds).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './daemon.js';

const FIXTURES = path.join(ROOT, 'fixtures');

export function fixtureBytes(rel: string): Buffer {
  return readFileSync(path.join(FIXTURES, rel));
}

/** The lines of an oVirt .jsonl session, each as the bytes the agent sends (with its newline). */
export function ovirtSession(name: string): Buffer[] {
  return fixtureBytes(`ovirt/${name}.jsonl`)
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => Buffer.from(l + '\n', 'utf8'));
}

/** The `return` value of a qemu-ga reply fixture. */
export function qgaReturn(name: string): unknown {
  return (JSON.parse(fixtureBytes(`qga/${name}.json`).toString('utf8')) as { return: unknown }).return;
}

/** Every fixture file, as raw bytes (fuzz seeds). */
export function allFixtureBytes(): Buffer[] {
  const out: Buffer[] = [];
  for (const dir of ['ovirt', 'qga'])
    for (const f of readdirSync(path.join(FIXTURES, dir))) out.push(fixtureBytes(`${dir}/${f}`));
  return out;
}
