/**
 * Configuration and documentation contracts: the loader (defaults, file < env < overrides, coercion of env
 * strings, every error reported at once, frozen result), docs/configuration.md's option table as the schema
 * gives it now (scripts/gen-config-doc.ts), and every error code documented in docs/api.md.
 *
 * Run: node --import tsx --test test/config.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../platform/config.ts';
import { ERROR_CODES, PlatformError } from '../core/errors.ts';
import { CONFIG_DOC, currentOptionsBlock, optionsBlock } from '../scripts/gen-config-doc.ts';

const API_DOC = await readFile(new URL('../docs/api.md', import.meta.url), 'utf8');

test('defaults fill every option and the result is frozen', () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.broker.port, 1883);
  assert.equal(c.ingest.batchSize, 5000);
  assert.equal(c.influx.url, '');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.broker));
});

test('file < environment < overrides, env strings coerced to their types', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'c.json');
  await writeFile(file, JSON.stringify({ broker: { port: 1000, host: '0.0.0.0' }, api: { port: 2000 } }));
  const c = loadConfig({
    env: {
      CITYPULSE_CONFIG: file,
      CITYPULSE_API_PORT: '3000',
      CITYPULSE_SIMULATE_ENABLED: 'false',
      CITYPULSE_INGEST_BATCH_MAX_AGE_MS: '75',
    },
    overrides: { broker: { port: 4000 } },
  });
  assert.equal(c.broker.port, 4000);
  assert.equal(c.broker.host, '0.0.0.0');
  assert.equal(c.api.port, 3000);
  assert.equal(c.simulate.enabled, false);
  assert.equal(c.ingest.batchMaxAgeMs, 75);
});

test('every error is reported at once, with its path', () => {
  let err: unknown;
  try {
    loadConfig({
      env: { CITYPULSE_BROKER_PORT: '70000', CITYPULSE_INGEST_BATCH_SIZE: 'lots', CITYPULSE_NOPE: '1' },
      overrides: { log: { level: 'loud' as never } },
    });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof PlatformError);
  assert.equal(err.code, 'CP_CONFIG_INVALID');
  const details = err.details as string[];
  assert.ok(details.some((d) => d.startsWith('broker.port')));
  assert.ok(details.some((d) => d.startsWith('ingest.batchSize')));
  assert.ok(details.some((d) => d.startsWith('log.level')));
  assert.ok(details.some((d) => d.startsWith('CITYPULSE_NOPE')));
});

test('docs/configuration.md holds the option table the schema gives (npm run docs:config)', async () => {
  const block = currentOptionsBlock(await readFile(CONFIG_DOC, 'utf8'));
  assert.ok(block, 'docs/configuration.md has no <!-- options:start --> … <!-- options:end --> block');
  assert.equal(block, optionsBlock(), 'docs/configuration.md is out of date: run npm run docs:config');
});

test('every error code is documented in docs/api.md', () => {
  for (const code of Object.keys(ERROR_CODES)) assert.match(API_DOC, new RegExp(`\\| \`${code}\` \\|`), `${code} undocumented`);
});

test('a list option takes a comma-separated environment value', () => {
  const c = loadConfig({ env: { CITYPULSE_API_CORS_ORIGINS: 'https://a.example, https://b.example:8443' } });
  assert.deepEqual(c.api.corsOrigins, ['https://a.example', 'https://b.example:8443']);
});
