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
