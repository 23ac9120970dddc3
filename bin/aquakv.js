#!/usr/bin/env node
// The `aquakv` command: the compiled CLI (npm install builds dist/ through the prepare script).
import('../dist/src/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('aquakv: dist/ is missing; run `npm install` (or `npm run build`) in the aquakv checkout first');
    process.exit(1);
  }
  throw err;
});
