/**
 * The audit's Prometheus metrics (src/ops/metrics.ts), read back with a strict parser of the
 * text exposition format written here, and writeFileAtomic.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { renderAuditMetrics, writeFileAtomic } from '../../src/ops/metrics.js';
import type { AuditResult, CopyState } from '../../src/ops/audit-result.js';
import { projectRoot } from '../helpers/cli.js';
import { HOSTILE_BACKUP, HOSTILE_DESTINATION, damagedResult, hostileResult, intactResult, mixedResult } from './audit-fixtures.js';

const STATES: CopyState[] = ['ok', 'repaired', 'damaged', 'incomplete', 'lost', 'in-progress', 'absent', 'error'];

interface Sample { readonly labels: Record<string, string>; readonly value: number }
interface Family { readonly help: string; readonly type: string; readonly samples: Sample[] }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Parses `{a="x",b="y"}` starting at `text[start] === '{'`; returns the labels and the index after `}`. */
function parseLabels(text: string, start: number, where: string): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1;
  if (text[i] === '}') return { labels, end: i + 1 };
  while (true) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`${where}: label without '='`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    if (text[eq + 1] !== '"') throw new Error(`${where}: label ${name} value not quoted`);
    let value = '';
    i = eq + 2;
    while (true) {
      const c = text[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const next = text[i + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${next ?? ''} in label ${name}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    labels[name] = value;
    i++;
    if (text[i] === '}') return { labels, end: i + 1 };
    if (text[i] !== ',') throw new Error(`${where}: expected ',' or '}' after label ${name}`);
    i++;
  }
}

/**
 * A strict reader of what node_exporter's textfile collector accepts: every line a HELP, a TYPE
 * or a sample; each family's HELP then TYPE (gauge) before its samples, all its samples together,
 * once; `name{labels} value` with no timestamp; no duplicate series; a final newline.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  if (!text.endsWith('\n')) throw new Error('no final newline');
  let current: string | undefined;
  let pendingHelp: { name: string; help: string } | undefined;
  const lines = text.slice(0, -1).split('\n');
  for (const [index, line] of lines.entries()) {
    const where = `line ${index + 1} ${JSON.stringify(line)}`;
    if (line.startsWith('#')) {
      const help = /^# HELP (\S+) (.*)$/.exec(line);
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (help) {
        const name = help[1]!;
        if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
        if (families.has(name) || pendingHelp) throw new Error(`${where}: HELP out of place`);
        if (/\\(?![\\n])/.test(help[2]!)) throw new Error(`${where}: bad escape in HELP`);
        pendingHelp = { name, help: help[2]!.replace(/\\n/g, '\n').replace(/\\\\/g, '\\') };
      } else if (type) {
        if (!pendingHelp || pendingHelp.name !== type[1]) throw new Error(`${where}: TYPE without its HELP just before`);
        if (type[2] !== 'gauge') throw new Error(`${where}: type ${type[2]} (only gauges here)`);
        families.set(type[1]!, { help: pendingHelp.help, type: type[2], samples: [] });
        current = type[1];
        pendingHelp = undefined;
      } else {
        throw new Error(`${where}: a comment that is neither HELP nor TYPE`);
      }
      continue;
    }
    if (line === '') throw new Error(`${where}: empty line`);
    if (pendingHelp) throw new Error(`${where}: sample between HELP and TYPE`);
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) throw new Error(`${where}: no metric name`);
    if (name !== current) throw new Error(`${where}: sample of ${name} outside its family (${current ?? 'none'})`);
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      const parsed = parseLabels(rest, 0, where);
      labels = parsed.labels;
      rest = rest.slice(parsed.end);
    }
    const value = /^ (\S+)$/.exec(rest)?.[1];
    if (value === undefined) throw new Error(`${where}: expected one space and a value (no timestamp)`);
    if (!FLOAT.test(value) && !['NaN', '+Inf', '-Inf'].includes(value)) throw new Error(`${where}: value ${value} is not a number`);
    const family = families.get(name)!;
    const key = JSON.stringify(Object.entries(labels).sort());
    if (family.samples.some((s) => JSON.stringify(Object.entries(s.labels).sort()) === key)) throw new Error(`${where}: duplicate series`);
    family.samples.push({ labels, value: Number(value) });
  }
  if (pendingHelp) throw new Error(`HELP of ${pendingHelp.name} without TYPE`);
  return families;
}

function family(families: Map<string, Family>, name: string): Family {
  const f = families.get(name);
  assert.ok(f, `family ${name} is missing`);
  return f;
}

/** The value of the one sample whose labels are exactly `labels`. */
function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const key = JSON.stringify(Object.entries(labels).sort());
  const found = family(families, name).samples.filter((s) => JSON.stringify(Object.entries(s.labels).sort()) === key);
  assert.ok(found.length <= 1);
  return found[0]?.value;
}

const EXPECTED_FAMILIES = [
  'offsite_audit_run_timestamp_seconds', 'offsite_audit_duration_seconds', 'offsite_audit_exit_code',
  'offsite_audit_destination_ok', 'offsite_audit_copies', 'offsite_audit_files_checked', 'offsite_audit_files_read',
  'offsite_audit_bytes_read', 'offsite_audit_damaged_files', 'offsite_audit_repaired_files',
  'offsite_audit_last_success_timestamp_seconds', 'offsite_audit_copy_state', 'offsite_audit_copy_last_full_read_timestamp_seconds',
];

/** What must hold for any result: states, sums and per-copy series agree with the result. */
function checkConsistent(result: AuditResult, families: Map<string, Family>): void {
  assert.deepEqual([...families.keys()].sort(), [...EXPECTED_FAMILIES].sort());
  for (const [name, f] of families) assert.ok(f.help.length > 10, `${name} has a real HELP`);
  const names = result.destinations.map((d) => d.name);

  const copies = family(families, 'offsite_audit_copies');
  assert.equal(copies.samples.length, names.length * STATES.length, 'every state of every destination, zeros included');
  for (const d of result.destinations) {
    const at = result.copies.filter((c) => c.destination === d.name);
    let sum = 0;
    for (const state of STATES) {
      const v = valueOf(families, 'offsite_audit_copies', { destination: d.name, state });
      assert.equal(v, at.filter((c) => c.state === state).length, `${d.name} ${state}`);
      sum += v ?? 0;
    }
    assert.equal(sum, at.length, `${d.name}: the states add up to its copies`);
    assert.equal(valueOf(families, 'offsite_audit_files_checked', { destination: d.name }), d.filesChecked);
    assert.equal(valueOf(families, 'offsite_audit_files_read', { destination: d.name }), d.filesRead);
    assert.equal(valueOf(families, 'offsite_audit_bytes_read', { destination: d.name }), d.bytesRead);
    assert.equal(valueOf(families, 'offsite_audit_destination_ok', { destination: d.name }), d.status === 'ok' ? 1 : 0);
    assert.equal(valueOf(families, 'offsite_audit_last_success_timestamp_seconds', { destination: d.name }),
      d.lastSuccess ? Date.parse(d.lastSuccess) / 1000 : undefined);
  }

  const states = family(families, 'offsite_audit_copy_state');
  assert.equal(states.samples.length, result.copies.length, 'one state sample per copy');
  for (const c of result.copies) {
    assert.equal(valueOf(families, 'offsite_audit_copy_state', { destination: c.destination, backup: c.backup, state: c.state }), 1);
    assert.equal(valueOf(families, 'offsite_audit_copy_last_full_read_timestamp_seconds', { destination: c.destination, backup: c.backup }),
      c.lastFullRead ? Date.parse(c.lastFullRead) / 1000 : undefined);
  }
  // sum by (destination, state) (offsite_audit_copy_state) == offsite_audit_copies
  for (const s of copies.samples) {
    const n = states.samples.filter((x) => x.labels['destination'] === s.labels['destination'] && x.labels['state'] === s.labels['state']).length;
    assert.equal(n, s.value, `copy_state agrees with copies for ${JSON.stringify(s.labels)}`);
  }
  assert.equal(valueOf(families, 'offsite_audit_exit_code'), result.exitCode);
  assert.equal(valueOf(families, 'offsite_audit_run_timestamp_seconds'), Date.parse(result.finishedAt) / 1000);
  assert.equal(valueOf(families, 'offsite_audit_duration_seconds'), (Date.parse(result.finishedAt) - Date.parse(result.startedAt)) / 1000);
}

describe('audit metrics', () => {
  it('the mixed result: valid exposition, consistent with the result', () => {
    const result = mixedResult();
    const text = renderAuditMetrics(result);
    mkdirSync(join(projectRoot, '.test-output'), { recursive: true });
    writeFileSync(join(projectRoot, '.test-output', 'audit-metrics.prom'), text);
    const families = parseExposition(text);
    checkConsistent(result, families);

    assert.equal(valueOf(families, 'offsite_audit_duration_seconds'), 2550.5);
    assert.equal(valueOf(families, 'offsite_audit_exit_code'), 4);
    assert.equal(valueOf(families, 'offsite_audit_copies', { destination: 'cloud', state: 'error' }), 2);
    assert.equal(valueOf(families, 'offsite_audit_copies', { destination: 'nas', state: 'absent' }), 1);
    assert.equal(valueOf(families, 'offsite_audit_copies', { destination: 'nas', state: 'repaired' }), 0);
    // disk: two damaged files left in full_backup_20240115; the two in 20240108 were repaired.
    assert.equal(valueOf(families, 'offsite_audit_damaged_files', { destination: 'disk' }), 2);
    assert.equal(valueOf(families, 'offsite_audit_repaired_files', { destination: 'disk' }), 2);
    assert.equal(valueOf(families, 'offsite_audit_damaged_files', { destination: 'cloud' }), 0);
    assert.equal(valueOf(families, 'offsite_audit_last_success_timestamp_seconds', { destination: 'nas' }), undefined, 'never: omitted');
    assert.equal(valueOf(families, 'offsite_audit_last_success_timestamp_seconds', { destination: 'disk' }), 1705028400);
    assert.equal(valueOf(families, 'offsite_audit_copy_last_full_read_timestamp_seconds', { destination: 'nas', backup: 'full_backup_20240101' }), undefined);
    assert.equal(valueOf(families, 'offsite_audit_copy_last_full_read_timestamp_seconds', { destination: 'disk', backup: 'full_backup_20240101' }), 1704855600);
    assert.match(text, /^offsite_audit_copy_state\{destination="disk",backup="full_backup_20240115",state="damaged"\} 1$/m);
    assert.match(text, /^offsite_audit_bytes_read\{destination="disk"\} 56623104$/m);
  });

  it('the other exit states are consistent too', () => {
    for (const result of [intactResult(), damagedResult(), hostileResult()]) checkConsistent(result, parseExposition(renderAuditMetrics(result)));
    const intact = parseExposition(renderAuditMetrics(intactResult()));
    assert.equal(valueOf(intact, 'offsite_audit_destination_ok', { destination: 'nas' }), 1);
    assert.equal(valueOf(intact, 'offsite_audit_damaged_files', { destination: 'nas' }), 0, 'a repaired file is not damaged any more');
    assert.equal(valueOf(intact, 'offsite_audit_repaired_files', { destination: 'nas' }), 1);
  });

  it('label values with backslash, quote and newline round-trip', () => {
    const text = renderAuditMetrics(hostileResult());
    const families = parseExposition(text);
    const [sample] = family(families, 'offsite_audit_copy_state').samples;
    assert.deepEqual(sample?.labels, { destination: HOSTILE_DESTINATION, backup: HOSTILE_BACKUP, state: 'ok' });
    assert.ok(text.includes('destination="we\\"ird\\\\na\\nme <b>&amp;"'), 'escaped as the format says');
    assert.equal(text.split('\n').filter((l) => l.startsWith('offsite_audit_copy_state{')).length, 1, 'no raw newline splits a sample');
  });

  it('the parser is strict (so the checks above mean something)', () => {
    const ok = '# HELP m A metric.\n# TYPE m gauge\nm{a="x"} 1\n';
    assert.equal(parseExposition(ok).get('m')?.samples[0]?.value, 1);
    const bad: Record<string, string> = {
      'no HELP/TYPE': 'm 1\n',
      'TYPE without HELP': '# TYPE m gauge\nm 1\n',
      'not a number': '# HELP m A.\n# TYPE m gauge\nm one\n',
      'bad escape': '# HELP m A.\n# TYPE m gauge\nm{a="\\t"} 1\n',
      'unquoted label': '# HELP m A.\n# TYPE m gauge\nm{a=x} 1\n',
      'timestamp': '# HELP m A.\n# TYPE m gauge\nm 1 1700000000000\n',
      'duplicate series': '# HELP m A.\n# TYPE m gauge\nm{a="x"} 1\nm{a="x"} 2\n',
      'family twice': '# HELP m A.\n# TYPE m gauge\nm 1\n# HELP m A.\n# TYPE m gauge\n',
      'sample of another family': '# HELP m A.\n# TYPE m gauge\nn 1\n',
      'no final newline': '# HELP m A.\n# TYPE m gauge\nm 1',
    };
    for (const [why, text] of Object.entries(bad)) assert.throws(() => parseExposition(text), Error, why);
  });
});

describe('writeFileAtomic', () => {
  it('creates, then replaces a file, leaving no temp file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-metrics-'));
    try {
      const path = join(dir, 'offsite.prom');
      await writeFileAtomic(path, 'first\n');
      assert.equal(readFileSync(path, 'utf8'), 'first\n');
      writeFileSync(path, 'an older, longer file than what replaces it\n');
      await writeFileAtomic(path, 'second\n');
      assert.equal(readFileSync(path, 'utf8'), 'second\n');
      assert.deepEqual(readdirSync(dir), ['offsite.prom']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a reader never sees a partial file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-metrics-'));
    try {
      const path = join(dir, 'offsite.prom');
      const a = `${'a'.repeat(2 * 1024 * 1024)}\n`;
      const b = `${'b'.repeat(3 * 1024 * 1024)}\n`;
      await writeFileAtomic(path, a);
      let done = false;
      let reads = 0;
      const reader = (async () => {
        while (!done) {
          const seen = await readFile(path, 'utf8');
          assert.ok(seen === a || seen === b, `a reader saw ${seen.length} bytes: neither file`);
          reads++;
        }
      })();
      for (let i = 0; i < 30; i++) await writeFileAtomic(path, i % 2 === 0 ? b : a);
      done = true;
      await reader;
      assert.ok(reads > 0);
      assert.deepEqual(readdirSync(dir), ['offsite.prom']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails without leaving its temp file when the rename cannot happen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-metrics-'));
    try {
      const target = join(dir, 'is-a-folder.prom');
      mkdirSync(join(target, 'inside'), { recursive: true });
      await assert.rejects(writeFileAtomic(target, 'x\n'));
      assert.deepEqual(readdirSync(dir), ['is-a-folder.prom'], 'no temp file left behind');
      await assert.rejects(writeFileAtomic(join(dir, 'missing', 'm.prom'), 'x\n'), /ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
