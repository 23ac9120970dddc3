/**
 * Errors a user can cause (a bad path, a malformed file, a wrong option) are `AquaError`s:
 * the CLI prints their message on one line and exits non-zero, without a stack trace.
 * Anything else is a bug and keeps its stack.
 */
export class AquaError extends Error {
  constructor(message: string, readonly hint?: string) {
    super(hint ? `${message} (hint: ${hint})` : message);
    this.name = 'AquaError';
  }
}

/** Throws an AquaError naming `where` unless `cond` holds. */
export function check(cond: boolean, where: string, message: string, hint?: string): asserts cond {
  if (!cond) throw new AquaError(`${where}: ${message}`, hint);
}

/** Shape check for kernels: a length mismatch is a programming error, reported with both sizes. */
export function checkLength(arr: ArrayLike<number>, expected: number, where: string, what: string): void {
  if (arr.length < expected) {
    throw new RangeError(`${where}: ${what} has ${arr.length} elements, expected at least ${expected}`);
  }
}
