// Tests that need root or a system tool: skipped with a printed reason on a developer machine,
// but under CI=true a missing prerequisite fails the run, so CI really runs them.
import { execFileSync } from 'node:child_process';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Returns null when all is present, else the reason. Throws under CI. */
export function missing(needs: { root?: boolean; commands?: string[] }): string | null {
  const reasons: string[] = [];
  if (needs.root && process.getuid?.() !== 0) reasons.push('needs root');
  for (const c of needs.commands ?? []) if (!hasCommand(c)) reasons.push(`needs the command '${c}'`);
  if (reasons.length === 0) return null;
  const why = reasons.join(', ');
  if (IN_CI) throw new Error(`prerequisite missing under CI=true: ${why}`);
  console.warn(`[skip] ${why}`);
  return why;
}
