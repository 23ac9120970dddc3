/**
 * The package as a user gets it: `npm pack`, then `npm install ./aquakv-*.tgz` in a fresh project
 * with no flags and none of this checkout's npm settings; the README's library example is
 * type-checked under node16, nodenext and bundler resolution and run; the CLI runs from there on
 * the built-in texts (which must ship with it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const work = mkdtempSync(join(tmpdir(), 'aquakv-package-'));
const project = join(work, 'project');
// a user's environment: none of the npm_config_* settings `npm test` passes down from this checkout's .npmrc
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = /<!-- library-example -->\s*```ts\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README.md has a library example under <!-- library-example -->');
  return m[1];
}

test('the packed package installs in a fresh project, and its README example type-checks and runs', { timeout: 240_000 }, () => {
  npm(['pack', '--ignore-scripts', '--pack-destination', work], ROOT);
  const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'))!;
  const files = execFileSync('tar', ['tzf', join(work, tgz)], { encoding: 'utf8' }).split('\n').filter(Boolean);
  assert.ok(files.includes('package/dist/src/index.js') && files.includes('package/dist/src/index.d.ts'));
  assert.ok(files.includes('package/models/aquakv-sotu/model.safetensors') && files.includes('package/grids/EDEN2-16.json'));
  for (const f of files) assert.doesNotMatch(f, /^package\/(src|tests|tools|bench|dist\/tests|dist\/tools|dist\/bench)\/|\.map$|training-log/, `${f} does not belong in the package`);

  execFileSync('mkdir', ['-p', project]);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', version: '1.0.0', private: true, type: 'module' }));
  npm(['install', join(work, tgz), '--prefer-offline', '--no-audit', '--no-fund'], project);
  const hasOrt = existsSync(join(project, 'node_modules/onnxruntime-node'));

  // the README's example, type-checked under each module resolution a TypeScript user may have
  writeFileSync(join(project, 'example.ts'), readmeExample());
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const typeRoots = [join(ROOT, 'node_modules/@types')];
  for (const [module, moduleResolution] of [['node16', 'node16'], ['nodenext', 'nodenext'], ['esnext', 'bundler']]) {
    const config = join(project, `tsconfig.${moduleResolution}.json`);
    writeFileSync(config, JSON.stringify({
      compilerOptions: { target: 'es2022', module, moduleResolution, strict: true, outDir: `out-${moduleResolution}`, typeRoots, types: ['node'], skipLibCheck: false },
      files: ['example.ts'],
    }));
    const r = spawnSync(process.execPath, [tsc, '-p', config], { cwd: project, encoding: 'utf8' });
    assert.equal(r.status, 0, `tsc under ${moduleResolution}: ${r.stdout}${r.stderr}`);
  }

  // without onnxruntime-node (its install script cannot fetch offline) the portable product runs, named once
  const bin = join(project, 'node_modules/.bin/aquakv');
  const notice = /matrix products run in portable TypeScript/g;
  const tiny = spawnSync(bin, ['eval', '--text', '@sotu-heldout', '--methods', 'fp,kivi2', '--seq-len', '256', '--max-tokens', '256', '--json'], { cwd: project, env, encoding: 'utf8' });
  assert.equal(tiny.status, 0, tiny.stderr);
  assert.equal((tiny.stderr.match(notice) ?? []).length, hasOrt ? 0 : 1, `the fallback is named once when onnxruntime-node is missing: ${tiny.stderr}`);
  // the README's advice for an offline machine: the bundled CPU build, without the install script's download
  if (!hasOrt) npm(['install', 'onnxruntime-node@~1.30.0', '--onnxruntime-node-install=skip', '--prefer-offline', '--no-audit', '--no-fund'], project);

  // predictors for the example (the default budget, on the built-in training text), then the example
  const cal = spawnSync(bin, ['calibrate', '--samples', '2', '--seq-len', '256', '--out', 'predictors.safetensors'], { cwd: project, env, encoding: 'utf8' });
  assert.equal(cal.status, 0, cal.stderr);
  assert.equal((cal.stderr.match(notice) ?? []).length, 0, 'onnxruntime-node is used once installed');

  const run = spawnSync(process.execPath, [join(project, 'out-nodenext/example.js')], { cwd: project, env, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.ok(lines[0].length > 20, `a continuation: ${run.stdout}`);
  assert.match(lines[1], /^\d+ bytes stored, \d\.\d{3} bits per compressed value$/);
  assert.match(lines[2], /^saved \d+ bytes, resumed \d+ tokens$/);
  assert.match(run.stdout, /\n\((length|stop)\)\n$/, 'the resumed conversation streams to its end');

  // a browser bundle of the installed package: the "browser" condition, no Node module anywhere
  writeFileSync(join(project, 'browser-entry.js'), "import { modelFromBytes, createCache, stream, parseMethod } from 'aquakv';\nconsole.log(typeof modelFromBytes, typeof createCache, typeof stream, typeof parseMethod);\n");
  const bundle = spawnSync(join(ROOT, 'node_modules/.bin/esbuild'), ['browser-entry.js', '--bundle', '--platform=browser', '--format=esm', '--outfile=browser-bundle.js'], { cwd: project, encoding: 'utf8' });
  assert.equal(bundle.status, 0, bundle.stderr);
  assert.doesNotMatch(readFileSync(join(project, 'browser-bundle.js'), 'utf8'), /from "node:|require\("node:/, 'the browser bundle imports no Node module');

  // every built-in text ships with the package
  const ev = spawnSync(bin, ['eval', '--text', '@moby-dick', '--methods', 'fp,kivi2', '--seq-len', '256', '--max-tokens', '256', '--json'], { cwd: project, env, encoding: 'utf8' });
  assert.equal(ev.status, 0, ev.stderr);
  assert.deepEqual((JSON.parse(ev.stdout) as { results: { method: string }[] }).results.map((r) => r.method), ['fp', 'kivi2']);
  for (const text of ['@sotu-heldout', '@sotu-train']) {
    const r = spawnSync(bin, ['eval', '--text', text, '--methods', 'fp', '--seq-len', '32', '--max-tokens', '32', '--json'], { cwd: project, env, encoding: 'utf8' });
    assert.equal(r.status, 0, `${text}: ${r.stderr}`);
  }
});
