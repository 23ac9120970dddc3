/**
 * The architecture, checked in `npm test` (dependency-cruiser): imports point one way, from the
 * bottom up, and none forms a cycle. Tiers (docs/ARCHITECTURE.md draws them):
 *   0 errors, platform        1 tensor        2 model, quant        3 io, kv
 *   4 predictors, eval        5 demo, report, train, serve, index (the public API)
 *   6 cli                     7 bench, tools, web (the browser page and its worker)
 * A module may import its own tier's other folders only where listed in SIBLINGS; never a tier above.
 * The core (tensor, model, quant, kv, predictors) never imports node:* itself: file, hash and
 * native-product access go through src/platform.
 */
const TIERS = [
  ['src/errors\\.ts', 'src/platform/'],
  ['src/tensor/'],
  ['src/model/', 'src/quant/'],
  ['src/io/', 'src/kv/'],
  ['src/predictors/', 'src/eval/'],
  ['src/demo/', 'src/report/', 'src/train/', 'src/serve/', 'src/index\\.ts', 'src/browser\\.ts'],
  ['src/cli/'],
  ['bench/', 'tools/', 'web/'],
];
// sibling imports that are allowed (same tier): the report renders the demo's result; the
// trainer evaluates through eval's texts
const SIBLINGS = [['src/report/', 'src/demo/'], ['src/platform/', 'src/errors\\.ts'], ['tools/', 'web/'], ['bench/', 'web/']];

const escape = (p) => `^${p}`;
const forbidden = [
  { name: 'no-circular', severity: 'error', comment: 'imports form no cycle', from: {}, to: { circular: true } },
  {
    name: 'core-without-node',
    severity: 'error',
    comment: 'model, quantizer, cache, predictor and tensor code is browser-safe: node:* only through src/platform',
    from: { path: '^src/(tensor|model|quant|kv|predictors)/' },
    to: { dependencyTypes: ['core'] },
  },
  {
    name: 'web-is-browser-code',
    severity: 'error',
    comment: 'the page and its worker run in a browser: no node:* module, nothing that reads files',
    from: { path: '^web/' },
    to: { dependencyTypes: ['core'] },
  },
  {
    name: 'web-loads-from-bytes',
    severity: 'error',
    comment: 'the worker loads models from fetched bytes (io/model-bytes), never through the file loaders',
    from: { path: '^web/' },
    to: { path: ['^src/io/(checkpoint|safetensors|tokenizer|load-model)\\.ts$', '^src/(cli|serve|demo|train)/', '^src/platform/node\\.ts$'] },
  },
  {
    name: 'library-never-imports-cli',
    severity: 'error',
    comment: 'library code knows nothing of flags or exit codes',
    from: { path: '^src/', pathNot: '^src/cli/' },
    to: { path: '^src/cli/' },
  },
];
TIERS.forEach((tier, t) => {
  const above = TIERS.slice(t + 1).flat();
  for (const from of tier) {
    if (above.length) {
      forbidden.push({
        name: `upward-from-${from.replace(/[^a-z]/gi, '')}`,
        severity: 'error',
        comment: `${from} (tier ${t}) imports nothing above its tier`,
        from: { path: escape(from) },
        to: { path: above.map(escape) },
      });
    }
    const siblings = tier.filter((o) => o !== from && !SIBLINGS.some(([a, b]) => a === from && b === o));
    if (siblings.length) {
      forbidden.push({
        name: `sideways-from-${from.replace(/[^a-z]/gi, '')}`,
        severity: 'error',
        comment: `${from} does not import its tier's other folders`,
        from: { path: escape(from) },
        to: { path: siblings.map(escape) },
      });
    }
  }
});

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js'] },
  },
};
