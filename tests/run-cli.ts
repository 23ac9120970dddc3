/** Runs the built `aquakv` command in a child process. */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BIN = resolve(fileURLToPath(import.meta.url), '../../../bin/aquakv.js');

export function aquakv(...args: string[]): { code: number | null; out: string; err: string } {
  // a hang (a FIFO read, say) is killed after a minute and shows as code null
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
