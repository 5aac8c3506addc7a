/**
 * Writes the option table of docs/configuration.md from the configuration schema (`describeOptions()` of
 * platform/config.ts), between the marker comments `<!-- options:start -->` and `<!-- options:end -->`; the text
 * around them is left as it is. test/config.test.ts fails when the page's table is not what this would write.
 *
 * Run: npm run docs:config
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeOptions } from '../platform/config.ts';

export const CONFIG_DOC = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));
export const OPTIONS_START = '<!-- options:start -->';
export const OPTIONS_END = '<!-- options:end -->';

/** The generated block, markers included: one row per option, `| path | ENV | default | description |`. */
export function optionsBlock(): string {
  const cell = (s: string) => s.replaceAll('|', '\\|');
  const rows = describeOptions().map(
    (o) => `| \`${o.path}\` | \`${o.env}\` | \`${cell(JSON.stringify(o.default))}\` | ${cell(o.description)} |`,
  );
  return [OPTIONS_START, '| option | environment variable | default | meaning |', '|---|---|---|---|', ...rows, OPTIONS_END].join('\n');
}

/** The block between the markers of `doc`, markers included; undefined when a marker is missing. */
export function currentOptionsBlock(doc: string): string | undefined {
  const start = doc.indexOf(OPTIONS_START);
  const end = doc.indexOf(OPTIONS_END, start);
  return start < 0 || end < 0 ? undefined : doc.slice(start, end + OPTIONS_END.length);
}

/** `doc` with its block replaced by the one the schema gives now. */
export function withOptionsBlock(doc: string): string {
  const current = currentOptionsBlock(doc);
  if (current === undefined) throw new Error(`${CONFIG_DOC}: markers ${OPTIONS_START} … ${OPTIONS_END} not found`);
  return doc.replace(current, () => optionsBlock());
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const doc = await readFile(CONFIG_DOC, 'utf8');
  const next = withOptionsBlock(doc);
  if (next !== doc) await writeFile(CONFIG_DOC, next);
  console.log(
    `${path.relative(process.cwd(), CONFIG_DOC)}: ${describeOptions().length} options${next === doc ? ', unchanged' : ' written'}`,
  );
}
