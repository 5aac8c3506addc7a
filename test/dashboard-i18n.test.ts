/**
 * The dashboard's dictionaries: Vietnamese and English have the same keys, no empty string, the same
 * {placeholders} per key, and every key the source asks for with t('…') exists. Plain Node, no browser.
 *
 * Run: node --import tsx --test test/dashboard-i18n.test.ts
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { en, translate, vi } from '../dashboard/src/i18n.ts';

const SRC = join(import.meta.dirname, '..', 'dashboard', 'src');
const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test('Vietnamese and English have the same keys, none empty, with the same placeholders', () => {
  assert.deepEqual(Object.keys(en).sort(), Object.keys(vi).sort());
  for (const [k, v] of Object.entries(vi)) {
    const e = en[k as keyof typeof en];
    assert.ok(v.trim() && e.trim(), `${k} is empty`);
    assert.deepEqual(placeholders(e), placeholders(v), `placeholders of ${k}`);
  }
  // Vietnamese is really Vietnamese where it differs, e.g. the login button and a placeholder filled in.
  assert.equal(translate('vi', 'login'), 'Đăng nhập');
  assert.equal(translate('en', 'mapDevices', { n: '5,000' }), '5,000 devices');
});

test('every key the dashboard source uses exists in the dictionaries', () => {
  const used = new Set<string>();
  for (const f of readdirSync(SRC)) {
    if (!/\.tsx?$/.test(f) || f === 'i18n.ts') continue;
    const text = readFileSync(join(SRC, f), 'utf8');
    for (const m of text.matchAll(/\bt\(\s*'([A-Za-z0-9_]+)'/g)) used.add(m[1] as string);
  }
  assert.ok(used.size > 50, `found ${used.size} keys in use`);
  for (const k of used) assert.ok(k in vi, `${k} is used but not in the dictionaries`);
});
