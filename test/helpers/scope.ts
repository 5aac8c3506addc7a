/**
 * A cleanup scope for resources shared by a whole test file. node:test runs an `after()` registered inside a
 * `before()` hook as soon as that hook ends, so file-level helpers register here instead; call
 * `fileScope()` at the top level of the file (it registers one root `after`, which runs cleanups in reverse).
 */
import { after } from 'node:test';

export function fileScope(): { after(fn: () => unknown): void } {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  return { after: (fn) => void cleanups.push(fn) };
}
