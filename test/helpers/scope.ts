/**
 * Cleanup in reverse order of creation. node:test runs `after` hooks first-in first-out, so a platform
 * registered after its InfluxDB would be stopped after that InfluxDB (and wait for it in vain). Helpers call
 * `onCleanup(t, fn)`: the first call for a context registers one hook that runs every cleanup, newest first.
 *
 * `fileScope()` is the same for resources shared by a whole file (call it at the top level: an `after()`
 * registered inside a `before()` hook would run as soon as that hook ends).
 */
import { after } from 'node:test';

type After = { after(fn: () => unknown): void };
const stacks = new WeakMap<object, (() => unknown)[]>();

export function onCleanup(t: After, fn: () => unknown): void {
  let stack = stacks.get(t);
  if (!stack) {
    const s: (() => unknown)[] = [];
    stack = s;
    stacks.set(t, s);
    t.after(async () => {
      for (const f of s.reverse()) await f();
    });
  }
  stack.push(fn);
}

export function fileScope(): After {
  // Registered now, at the top level of the file, so that it runs when the file ends.
  const stack: (() => unknown)[] = [];
  after(async () => {
    for (const f of stack.reverse()) await f();
  });
  const scope: After = { after: (fn) => void stack.push(fn) };
  stacks.set(scope, stack); // helpers' onCleanup(scope, …) joins the same stack
  return scope;
}
