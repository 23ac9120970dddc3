/**
 * The host platform. Under Node this is `./node.js`; a bundler targeting browsers replaces that
 * module by `./browser.js` (package.json "browser" field), so nothing else changes.
 */
export { platform } from './node.js';
export type { Platform, Hasher, GemmFn, FastGemm, KernelPool, ScratchStore, BackgroundThread } from './platform.js';
