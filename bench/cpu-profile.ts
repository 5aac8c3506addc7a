/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with the most self time, and the same
 * grouped by package or project folder, so "what dominates the per-reading path" is one table.
 *
 *   node --import tsx bench/cpu-profile.ts <file.cpuprofile> [--top=30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  share: number;
}

/** Where a script lives: `aedes/lib/client.js`, `ingest/durable-log.ts`, `node:internal/...`, or `(native)`. */
function place(url: string): string {
  if (!url) return '(native)';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + 14);
  const m = /\/(broker|ingest|analytics|alarms|dashboard-api|platform|registry|commands|bench)\/(.*)$/.exec(u);
  return m ? `${m[1]}/${m[2]}` : u;
}

/** Package name (`aedes`, `@scope/x`), project folder (`ingest`) or `node` / `(native)`. */
function group(where: string): string {
  if (where === '(native)') return where;
  if (where.startsWith('node:')) return 'node core';
  const parts = where.split('/');
  if (where.startsWith('@')) return `${parts[0]}/${parts[1]}`;
  return parts[0] as string;
}

export function summarise(profile: Profile): { total: number; functions: SelfTime[]; groups: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, SelfTime>();
  const grp = new Map<string, SelfTime>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id) as ProfileNode;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)' || name === '(program)') continue;
    total += us;
    const where = place(n.callFrame.url);
    const key = `${name}@${where}:${n.callFrame.lineNumber + 1}`;
    const e = fn.get(key) ?? { name, where: `${where}:${n.callFrame.lineNumber + 1}`, ms: 0, share: 0 };
    e.ms += us / 1000;
    fn.set(key, e);
    const g = group(where);
    const ge = grp.get(g) ?? { name: g, where: '', ms: 0, share: 0 };
    ge.ms += us / 1000;
    grp.set(g, ge);
  }
  const finish = (m: Map<string, SelfTime>) =>
    [...m.values()].map((e) => ({ ...e, share: (100 * e.ms) / (total / 1000) })).sort((a, b) => b.ms - a.ms);
  return { total: total / 1000, functions: finish(fn), groups: finish(grp) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } });
  const file = positionals[0];
  if (!file) {
    console.error('usage: bench/cpu-profile.ts <file.cpuprofile> [--top=30]');
    process.exit(2);
  }
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const top = Number(values.top);
  console.log(`busy (not idle) ${(s.total / 1000).toFixed(1)} s\n\nself time by package / folder`);
  for (const g of s.groups.slice(0, 15)) console.log(`  ${g.share.toFixed(1).padStart(5)} %  ${g.ms.toFixed(0).padStart(7)} ms  ${g.name}`);
  console.log(`\ntop ${top} functions by self time`);
  for (const f of s.functions.slice(0, top))
    console.log(`  ${f.share.toFixed(1).padStart(5)} %  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}  ${f.where}`);
}
