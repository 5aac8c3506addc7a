/**
 * The layout's arrows point one way. Every source file's relative imports (static imports and re-exports,
 * `import type` too, and `import()` of a relative path) form a graph that must hold:
 *  - no cycle among files;
 *  - a folder imports only folders below it in LAYERS: core/ imports no project folder; each component
 *    imports core/ and the components before it; platform/ composes them all;
 *  - bin/, bench/, test/ and scripts/ sit on top and may import any folder; nothing else imports platform/ or bin/;
 *  - the browser dashboard reads wire types from core/ and the components, never platform/.
 * A folder not named here fails the test until it is given its place.
 *
 * Run: node --import tsx --test test/import-graph.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Lowest first: each folder may import only the folders before it (and itself). */
const LAYERS = ['core', 'registry', 'ingest', 'analytics', 'alarms', 'commands', 'broker', 'dashboard-api', 'simulators', 'platform'];
/** Entry points, benchmarks, tests and scripts: above everything, they may import any folder. */
const TOP = ['bin', 'bench', 'test', 'scripts'];
/** The browser app: wire types from core/ and the components (type-only imports), nothing that runs the platform. */
const CLIENTS: Record<string, string[]> = { dashboard: LAYERS.slice(0, LAYERS.indexOf('platform')) };

const SKIP_DIRS = new Set(['node_modules', 'dist', 'data', 'coverage']);
const SOURCE = /\.(ts|tsx|mts|mjs)$/;

type Graph = Map<string, string[]>;

/** Every non-test source file, relative to the repository, `/`-separated. */
function sourceFiles(dir = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) out.push(...sourceFiles(rel));
    } else if (SOURCE.test(e.name) && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** The relative module specifiers a file imports, resolved to repository paths. */
function importsOf(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(path.join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, false);
  const specs: string[] = [];
  const visit = (node: ts.Node) => {
    let spec: ts.Node | undefined;
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) spec = node.moduleSpecifier;
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) spec = node.argument.literal;
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) spec = node.arguments[0];
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith('.')) specs.push(spec.text);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return specs.map((s) => path.posix.normalize(path.posix.join(path.posix.dirname(file), s)));
}

const folderOf = (file: string) => (file.includes('/') ? (file.split('/')[0] as string) : '.');

/** Why `from` may not import `to`, or undefined when it may. */
function refusal(from: string, to: string): string | undefined {
  if (from === to || TOP.includes(from)) return undefined;
  const allowed = LAYERS.includes(from) ? LAYERS.slice(0, LAYERS.indexOf(from)) : CLIENTS[from];
  if (!allowed) return `${from}/ has no place in the folder order`;
  if (allowed.includes(to)) return undefined;
  if (TOP.includes(to) || to === 'platform') return `only ${TOP.join('/, ')}/ import ${to}/`;
  if (LAYERS.includes(from) && LAYERS.includes(to)) return `${to}/ is above ${from}/`;
  return `${from}/ may import only ${allowed.map((f) => `${f}/`).join(', ') || 'no project folder'}`;
}

/** Arrows that break the folder order, as `file → target (why)`. */
function folderViolations(graph: Graph): string[] {
  const out: string[] = [];
  for (const [file, targets] of graph) {
    for (const t of new Set(targets)) {
      const why = refusal(folderOf(file), folderOf(t));
      if (why) out.push(`${file} → ${t} (${why})`);
    }
  }
  return out.sort();
}

/** Each cycle among files (one per strongly connected set), as `a → b → … → a`. */
function cycles(graph: Graph): string[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const sets: string[][] = [];
  let next = 0;
  const connect = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const set: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        set.push(w);
      } while (w !== v);
      if (set.length > 1 || (graph.get(v) ?? []).includes(v)) sets.push(set);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) connect(v);
  return sets.map((set) => {
    // The shortest way from the set's first file back to itself, inside the set.
    const start = [...set].sort()[0] as string;
    const members = new Set(set);
    const prev = new Map<string, string>();
    const queue = [start];
    let end: string | undefined;
    while (queue.length && !end) {
      const v = queue.shift() as string;
      for (const w of graph.get(v) ?? []) {
        if (w === start) {
          end = v;
          break;
        }
        if (members.has(w) && !prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    const way = [start];
    for (let v = end as string; v !== start; v = prev.get(v) as string) way.splice(1, 0, v);
    return `${[...way, start].join(' → ')}${set.length > way.length ? ` (and ${set.length - way.length} more files in the same loop)` : ''}`;
  });
}

const graph: Graph = new Map(sourceFiles().map((f) => [f, importsOf(f)]));

test('the scan sees every folder of the order', () => {
  const folders = new Set([...graph.keys()].map(folderOf));
  for (const f of [...LAYERS, ...Object.keys(CLIENTS), 'bin', 'bench']) assert.ok(folders.has(f), `no source file found in ${f}/`);
});

test('no import cycle among files', () => {
  const found = cycles(graph);
  assert.deepEqual(found, [], `import cycles:\n  ${found.join('\n  ')}`);
});

test(`folders import only folders below them: ${LAYERS.join(' < ')} < ${TOP.join(', ')}`, () => {
  const found = folderViolations(graph);
  assert.deepEqual(found, [], `arrows against the folder order:\n  ${found.join('\n  ')}`);
});

test('the check itself sees a back-arrow, a cycle and a folder without a place', () => {
  const sample: Graph = new Map([
    ['core/a.ts', ['ingest/b.ts']],
    ['ingest/b.ts', ['core/a.ts', 'platform/p.ts']],
    ['platform/p.ts', ['ingest/b.ts']],
    ['broker/c.ts', ['dashboard-api/d.ts']],
    ['dashboard-api/d.ts', ['broker/c.ts']],
    ['misc/e.ts', ['core/a.ts']],
  ]);
  assert.deepEqual(folderViolations(sample), [
    'broker/c.ts → dashboard-api/d.ts (dashboard-api/ is above broker/)',
    'core/a.ts → ingest/b.ts (ingest/ is above core/)',
    'ingest/b.ts → platform/p.ts (only bin/, bench/, test/, scripts/ import platform/)',
    'misc/e.ts → core/a.ts (misc/ has no place in the folder order)',
  ]);
  assert.equal(cycles(sample).length, 2);
  assert.ok(cycles(sample).includes('broker/c.ts → dashboard-api/d.ts → broker/c.ts'));
});
