/**
 * Progress for long steps: a cli-progress bar with ETA on a terminal, plain lines every ~10%
 * otherwise (CI logs stay readable). Progress goes to stderr so stdout stays machine-readable.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, label?: string): void;
  stop(): void;
}

export function progress(title: string, quiet = false): Progress {
  if (quiet) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${title} [{bar}] {percentage}% {value}/{total} ETA {eta_formatted} {label}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(done, total, label = '') {
        if (!started) {
          bar.start(total, 0, { label });
          started = true;
        }
        bar.setTotal(total);
        bar.update(done, { label });
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  const t0 = performance.now();
  let lastDecile = -1;
  return {
    update(done, total, label = '') {
      const decile = Math.floor((10 * done) / total);
      if (decile === lastDecile && done !== total) return;
      lastDecile = decile;
      const elapsed = (performance.now() - t0) / 1000;
      const eta = done > 0 ? (elapsed * (total - done)) / done : NaN;
      process.stderr.write(`${title}: ${done}/${total} (${Math.round((100 * done) / total)}%) elapsed ${elapsed.toFixed(0)}s ETA ${Number.isFinite(eta) ? eta.toFixed(0) + 's' : '?'} ${label}\n`);
    },
    stop() {},
  };
}
