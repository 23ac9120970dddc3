/** The Node implementation of the platform: node:fs, node:crypto, the package root, onnxruntime-node. */
import { accessSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AquaError } from '../errors.js';
import { loadOrtGemm } from './ort-gemm.js';
import { createKernelPool } from './kernel-pool.js';
import { startBackgroundThread } from './background-thread.js';
import type { BackgroundThread, Hasher, KernelPool, Platform, ScratchStore } from './platform.js';

/**
 * The package root: the nearest directory above this file whose package.json is aquakv's. The
 * same walk works from src/ (ts-node), dist/src/ (a checkout) and node_modules/aquakv/dist/src/.
 */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'aquakv') return dir;
      } catch {
        // an unreadable package.json on the way up is not ours
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`aquakv: cannot find the package root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Refuses what would hang (a FIFO), fail late (a directory) or is no file at all, with one line. */
function checkRegularFile(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new AquaError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isFile()) throw new AquaError(`cannot read ${path}: it is ${st.isDirectory() ? 'a directory' : 'not a regular file'}`);
}

let root: string | null = null;
let tmpCounter = 0;

export const platform: Platform = {
  name: 'node',
  checkFile: checkRegularFile,
  readFile(path) {
    checkRegularFile(path);
    try {
      const b = readFileSync(path);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch (e) {
      throw new AquaError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  },
  readText(path) {
    return new TextDecoder().decode(platform.readFile(path));
  },
  writeFileAtomic(path, data) {
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${tmpCounter++}.tmp`);
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    let fd: number | null = null;
    try {
      fd = openSync(tmp, 'w');
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
      closeSync(fd);
      fd = null;
      renameSync(tmp, path);
    } catch (e) {
      if (fd !== null) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // nothing was created
      }
      throw new AquaError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  },
  checkWritable(path) {
    if (existsSync(path) && statSync(path).isDirectory()) throw new AquaError(`cannot write ${path}: it is a directory`);
    // replacing a device or a FIFO by renaming a file over it is never what was meant
    if (existsSync(path) && !statSync(path).isFile()) throw new AquaError(`cannot write ${path}: it is not a regular file`);
    const dir = dirname(resolve(path));
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AquaError(`cannot write ${path}: directory ${dir} does not exist`);
    try {
      accessSync(dir, constants.W_OK);
    } catch {
      throw new AquaError(`cannot write ${path}: directory ${dir} is not writable`);
    }
  },
  exists: (path) => existsSync(path),
  isDirectory: (path) => existsSync(path) && statSync(path).isDirectory(),
  makeDirectory(path) {
    try {
      mkdirSync(path, { recursive: true });
    } catch (e) {
      throw new AquaError(`cannot create directory ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  },
  joinPath: (...parts) => join(...parts),
  sha256(): Hasher {
    const h = createHash('sha256');
    const hasher: Hasher = {
      update(data) {
        h.update(data);
        return hasher;
      },
      digest: () => h.digest('hex'),
    };
    return hasher;
  },
  assetPath(relative) {
    root ??= findPackageRoot();
    return resolve(root, relative);
  },
  fastGemm() {
    // AQUAKV_GEMM=ts asks for the portable product on purpose (tests, comparisons): no notice then
    if (process.env.AQUAKV_GEMM === 'ts') return { fn: null, reason: 'AQUAKV_GEMM=ts', quiet: true };
    const parallelMin = process.env.AQUAKV_PARALLEL_MIN ? Number(process.env.AQUAKV_PARALLEL_MIN) : undefined;
    return loadOrtGemm(threadCount(), parallelMin, () => pool?.cool());
  },
  kernelPool() {
    // the same thread count as the native product
    // (no product is split while a background thread works: its helper would share that core)
    if (pool === undefined) pool = createKernelPool(Math.max(0, threadCount() - 1), anyBackgroundBusy);
    return pool;
  },
  backgroundThread(moduleUrl) {
    // the same cores as the products: AQUAKV_THREADS=1 (one core for all of aquakv) means none
    if (process.env.AQUAKV_BACKGROUND === '0' || !(threadCount() >= 2)) return null;
    let t = background.get(moduleUrl);
    if (t === undefined) {
      t = startBackgroundThread(moduleUrl);
      background.set(moduleUrl, t);
    }
    return t;
  },
  scratchStore(): ScratchStore {
    const dir = mkdtempSync(join(tmpdir(), 'aquakv-scratch-'));
    const path = join(dir, 'data');
    const fd = openSync(path, 'w+');
    // unlinked at once: the space lives as long as the descriptor, and nothing outlives a crash
    unlinkSync(path);
    rmdirSync(dir);
    let size = 0;
    let open = true;
    return {
      append(data) {
        const at = size;
        try {
          for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, at + done);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
          throw new AquaError(`cannot write scratch data to ${tmpdir()} (${code}, after ${size} bytes)`, 'set TMPDIR to a directory with room');
        }
        size += data.length;
        return at;
      },
      read(offset, into) {
        for (let got = 0; got < into.length; ) {
          const r = readSync(fd, into, got, into.length - got, offset + got);
          if (r === 0) throw new Error(`scratch store: read past its end (${offset + got} of ${size})`);
          got += r;
        }
      },
      close() {
        if (open) closeSync(fd);
        open = false;
      },
    };
  },
  warn(message) {
    process.stderr.write(`aquakv: ${message}\n`);
  },
};

/** Threads aquakv may use: AQUAKV_THREADS, else every core. */
function threadCount(): number {
  return process.env.AQUAKV_THREADS ? Number(process.env.AQUAKV_THREADS) : availableParallelism();
}

let pool: KernelPool | null | undefined;
const background = new Map<string, BackgroundThread | null>();
/** Whether a background thread works now (asked at every product that could be split: no copy of the map). */
function anyBackgroundBusy(): boolean {
  for (const t of background.values()) if (t?.busy()) return true;
  return false;
}
