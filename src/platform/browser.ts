/**
 * The browser implementation of the platform (bundlers substitute it for ./node.js). A browser has
 * no synchronous file system: models, tokenizers, grids and predictor files reach the library as
 * bytes, so the file functions refuse with a message that says so; hashing runs in TypeScript.
 */
import { AquaError } from '../errors.js';
import { sha256 } from './sha256.js';
import type { Platform, ScratchStore } from './platform.js';

const noFiles = (what: string): never => {
  throw new AquaError(`${what}: there is no file system in the browser`, 'load models, grids and predictors from bytes (fetch them first)');
};

export const platform: Platform = {
  name: 'browser',
  checkFile: (path) => noFiles(`reading ${path}`),
  readFile: (path) => noFiles(`reading ${path}`),
  readText: (path) => noFiles(`reading ${path}`),
  writeFileAtomic: (path) => noFiles(`writing ${path}`),
  checkWritable: (path) => noFiles(`writing ${path}`),
  exists: () => false,
  isDirectory: () => false,
  makeDirectory: (path) => noFiles(`creating ${path}`),
  joinPath: (...parts) => parts.join('/').replace(/\/+/g, '/'),
  sha256,
  assetPath: (relative) => relative,
  fastGemm: () => ({ fn: null, reason: 'no native matrix product in the browser', quiet: true }),
  // the page's model runs in one worker; kernels run on it alone
  kernelPool: () => null,
  // the page's cache compresses in its step: the model already runs in a worker of its own
  backgroundThread: () => null,
  scratchStore(): ScratchStore {
    // no file system: pieces kept in memory, found by offset
    const pieces: { at: number; data: Uint8Array }[] = [];
    let size = 0;
    return {
      append(data) {
        pieces.push({ at: size, data: data.slice() });
        size += data.length;
        return size - data.length;
      },
      read(offset, into) {
        let got = 0;
        for (const p of pieces) {
          if (got === into.length) break;
          const from = offset + got;
          if (from < p.at || from >= p.at + p.data.length) continue;
          const take = Math.min(into.length - got, p.at + p.data.length - from);
          into.set(p.data.subarray(from - p.at, from - p.at + take), got);
          got += take;
        }
        if (got < into.length) throw new Error(`scratch store: read past its end (${offset + got} of ${size})`);
      },
      close() {
        pieces.length = 0;
      },
    };
  },
  warn: (message) => console.warn(`aquakv: ${message}`),
};
