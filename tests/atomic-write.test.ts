/** platform.writeFileAtomic: a process killed while writing leaves the old file whole, never a partial one. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PLATFORM = resolve(fileURLToPath(import.meta.url), '../../src/platform/index.js');

test('a writer killed mid-write leaves the previous file intact and no partial file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-atomic-'));
  const path = join(dir, 'predictors.safetensors');
  const old = 'the previous, complete file';
  writeFileSync(path, old);
  // a child writes 400 MB through the atomic writer (long enough to be killed in the middle)
  const size = 400 * 1024 * 1024;
  const script = `import { platform } from ${JSON.stringify(PLATFORM)};
    const data = new Uint8Array(${size}).fill(7);
    process.stdout.write('start\\n');
    platform.writeFileAtomic(${JSON.stringify(path)}, data);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((done) => child.stdout.once('data', () => done()));
  // kill it once the temporary file holds some but not all of the bytes: really in the middle
  const partial = () => readdirSync(dir).some((f) => {
    if (!f.endsWith('.tmp')) return false;
    try {
      const n = statSync(join(dir, f)).size;
      return n > 0 && n < size;
    } catch {
      return false; // renamed between the listing and the stat
    }
  });
  const deadline = Date.now() + 20_000;
  while (!partial() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  assert.ok(partial(), 'caught the writer in the middle of its write');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.equal(readFileSync(path, 'utf8'), old, 'the old file is whole');
  // what may remain is a hidden temporary file, never the target with partial content
  for (const f of readdirSync(dir)) assert.ok(f === 'predictors.safetensors' || /^\.predictors\.safetensors\.\d+\.\d+\.tmp$/.test(f), f);
});
