/**
 * Words of the house: every git-tracked text file speaks of the project (what it does and why), never of the
 * issue tracker or of how the work was organised. Fails naming file:line for the word issue followed by its
 * number (singular or plural), "(issue", "this session", "previous session", "next session" and "helper-" with a
 * digit. Legitimate wording stays legal: "issues a new token" (the API's verb), an operator's login session
 * ("ends this session"), an MQTT session ("discard any previous session"). Skips package-lock.json, binary
 * files (a NUL byte in the first 8 KiB, as git decides) and this file.
 *
 * Run: node --import tsx --test test/house-words.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SKIP = new Set(['package-lock.json', 'test/house-words.test.ts']);

/** Each rule, with what it means; a line may break several. */
const RULES: { re: RegExp; what: string }[] = [
  { re: /\bissues?\s+#?\d/i, what: 'an issue number' },
  { re: /\(issues?\b(?!\s+(?:a|an|the|new|its|their|one|tokens?)\b)/i, what: '"(issue"' },
  { re: /(?<!\b(?:end|ends|ended|ending|close|closes|closed)\s+)\bthis\s+session\b/i, what: '"this session"' },
  { re: /(?<!\bany\s+)\bprevious\s+session\b/i, what: '"previous session"' },
  { re: /\bnext\s+session\b/i, what: '"next session"' },
  { re: /\bhelper-\d/i, what: '"helper-" and a number' },
];

/** `file:line: what: the line` for every rule a line of `text` breaks. */
function houseWordHits(file: string, text: string): string[] {
  const hits: string[] = [];
  text.split('\n').forEach((line, i) => {
    for (const { re, what } of RULES) if (re.test(line)) hits.push(`${file}:${i + 1}: ${what}: ${line.trim().slice(0, 160)}`);
  });
  return hits;
}

test('the rules catch tracker words and leave the API and session wording alone', () => {
  // The tracker's word is spliced in, so that this file itself holds no such line.
  const ISSUE = 'issue';
  for (const bad of [
    `Target (${ISSUE} 6): 40k readings/s`,
    `see ${ISSUE}s 4-5`,
    `fixed in ${ISSUE} #12`,
    'measured in this session',
    'the previous session’s figures',
    'left for the next session',
    'written by helper-2',
  ])
    assert.ok(houseWordHits('x', bad).length > 0, bad);
  for (const good of [
    '`POST /api/v1/devices/{id}/token` issues a new token (shown once)',
    "summary: 'Issue a new token (shown once)'",
    'The platform (issues a new token) answers 200',
    '`POST /api/v1/auth/logout` ends this session (its sockets are closed)',
    "summary: 'End this session (the service token has none)'",
    'a clean start discards any previous session (MQTT-3.1.2-6)',
    'an operator session (login) expires after this long',
    'the ticket #12 in prose',
    'columnIssue, defectiveLamp',
  ])
    assert.deepEqual(houseWordHits('x', good), [], good);
});

test('no tracked text file speaks of the tracker or of how the work was organised', (t) => {
  let files: string[];
  try {
    files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
      .split('\0')
      .filter((f) => f && !SKIP.has(f));
  } catch {
    t.skip('not a git checkout');
    return;
  }
  const hits: string[] = [];
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(ROOT, file));
    } catch {
      continue; // listed but deleted in the working tree
    }
    if (bytes.subarray(0, 8192).includes(0)) continue;
    hits.push(...houseWordHits(file, bytes.toString('utf8')));
  }
  assert.deepEqual(hits, [], `tracker words:\n${hits.join('\n')}`);
});
