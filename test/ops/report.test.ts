/**
 * The audit's HTML report (src/ops/report.ts): rendered from hand-made results, opened in
 * headless Chromium (test/helpers/chromium.ts), checked on the DOM Chromium builds, and
 * screenshotted to .test-output/audit-report.png (and -mobile.png) for a human to look at.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { renderAuditHtml } from '../../src/ops/report.js';
import type { AuditResult } from '../../src/ops/audit-result.js';
import { chromiumOrSkip, renderInChromium } from '../helpers/chromium.js';
import { projectRoot } from '../helpers/cli.js';
import {
  B1, B2, B3, B4, CLOUD_MESSAGE, ERROR_COPY_MESSAGE, EVIL_MESSAGE, EVIL_PATH, HOSTILE_BACKUP, HOSTILE_DESTINATION, INCOMPLETE_MESSAGE, NOW,
  damagedResult, hostileResult, intactResult, mixedResult,
} from './audit-fixtures.js';

const outDir = join(projectRoot, '.test-output');
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Text as Chromium serializes a text node: `&`, `<`, `>` (and no-break spaces) escaped. */
function asSerializedText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\u00a0/g, '&nbsp;');
}

/** The text content of serialized HTML: tags dropped, entities decoded. */
function textOf(html: string): string {
  return decodeEntities(html.replace(/<[^>]*>/g, ''));
}

/** `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&nbsp;` and `&#NN;` decoded. */
function decodeEntities(html: string): string {
  return html
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&nbsp;/g, '\u00a0').replace(/&amp;/g, '&');
}

/** The outer HTML of the first `<tag ...>` whose opening matches `opening`, up to its matching close tag. */
function element(html: string, tag: string, opening: RegExp): string {
  const open = new RegExp(`<${tag}\\b[^>]*>`, 'g');
  let m: RegExpExecArray | null;
  while ((m = open.exec(html)) !== null) {
    if (!opening.test(m[0])) continue;
    const tokens = new RegExp(`<(/?)${tag}\\b[^>]*>`, 'g');
    tokens.lastIndex = m.index;
    let depth = 0;
    let t: RegExpExecArray | null;
    while ((t = tokens.exec(html)) !== null) {
      depth += t[1] === '/' ? -1 : 1;
      if (depth === 0) return html.slice(m.index, t.index + t[0].length);
    }
    throw new Error(`<${tag}> opened at ${m.index} is never closed`);
  }
  throw new Error(`no <${tag}> matching ${opening} in the DOM`);
}

/** Every `<tag ...>...</tag>` directly inside `html` (tags of that name do not nest here). */
function all(html: string, tag: string): string[] {
  return html.match(new RegExp(`<${tag}\\b[^>]*>[\\s\\S]*?</${tag}>`, 'g')) ?? [];
}

/** The decoded values of every `name="..."` attribute in serialized HTML (Chromium escapes `&"`, newer versions `<>` too). */
function attrValues(html: string, name: string): string[] {
  return [...html.matchAll(new RegExp(`\\s${name}="([^"]*)"`, 'g'))].map((m) => decodeEntities(m[1] ?? ''));
}

function pngSize(png: Buffer): { width: number; height: number } {
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

const LABELS: Record<string, string> = {
  ok: 'OK', repaired: 'Repaired', damaged: 'Damaged', incomplete: 'Incomplete', 'in-progress': 'In progress', absent: 'Absent', error: 'Error',
};

describe('audit report in headless Chromium', () => {
  it('shows the backups x destinations matrix, every state, escaped damage, and a screenshot', async (t) => {
    if (!(await chromiumOrSkip(t))) return;
    mkdirSync(outDir, { recursive: true });
    const result = mixedResult();
    const htmlPath = join(outDir, 'audit-report.html');
    const pngPath = join(outDir, 'audit-report.png');
    const html = renderAuditHtml(result, NOW);
    writeFileSync(htmlPath, html);

    const { dom } = await renderInChromium(htmlPath, { screenshot: pngPath });

    // The screenshot: a real PNG of the requested window, not a blank few bytes.
    const png = readFileSync(pngPath);
    assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE), 'PNG signature');
    assert.ok(statSync(pngPath).size > 20_000, `screenshot is only ${png.length} bytes`);
    assert.deepEqual(pngSize(png), { width: 1280, height: 900 });

    // Nothing injected: no script element, the title untouched, the message shown as text.
    assert.doesNotMatch(dom, /<script/i, 'a <script> element made it into the DOM');
    assert.doesNotMatch(dom, /<b>3<\/b>/, 'markup from a message was parsed');
    assert.match(dom, /<title>offsite audit of local \/var\/lib\/milvus-backup — 2024-01-20 11:42 UTC<\/title>/);
    assert.ok(dom.includes(asSerializedText(EVIL_MESSAGE)), 'the hostile message appears escaped, as text');
    assert.ok(textOf(dom).includes(EVIL_MESSAGE), 'the hostile message reads as itself');
    assert.ok(textOf(dom).includes(EVIL_PATH), 'the hostile path reads as itself');
    assert.ok(dom.includes(asSerializedText(CLOUD_MESSAGE)));
    assert.ok(dom.includes(asSerializedText(ERROR_COPY_MESSAGE)));

    // The matrix: one row per backup, one column per destination, one cell per copy.
    const matrix = element(dom, 'table', /id="matrix"/);
    const head = element(matrix, 'thead', /./);
    const columns = all(head, 'th').filter((th) => th.includes('data-destination='));
    assert.deepEqual(columns.map((th) => /data-destination="([^"]*)"/.exec(th)?.[1]), ['disk', 'nas', 'cloud']);
    const rows = all(element(matrix, 'tbody', /./), 'tr');
    assert.deepEqual(rows.map((tr) => /data-backup="([^"]*)"/.exec(tr)?.[1]), [B4, B1, B2, B3], 'rows = backups, in the result order');
    for (const row of rows) {
      const backup = /data-backup="([^"]*)"/.exec(row)?.[1] ?? '';
      assert.ok(textOf(all(row, 'th')[0] ?? '').includes(backup), `row header names ${backup}`);
      const cells = all(row, 'td');
      assert.equal(cells.length, 3, `${backup}: one cell per destination`);
      for (const [i, destination] of ['disk', 'nas', 'cloud'].entries()) {
        const cell = cells[i] ?? '';
        const copy = result.copies.find((c) => c.backup === backup && c.destination === destination);
        assert.ok(copy);
        assert.match(cell, new RegExp(`data-label="${destination}"`));
        assert.match(cell, new RegExp(`data-state="${copy.state}"`));
        assert.match(cell, new RegExp(`<span class="label">${LABELS[copy.state]}</span>`), `${backup}@${destination} shows ${copy.state} as text`);
        const text = textOf(cell);
        if (copy.state === 'absent') {
          assert.doesNotMatch(text, /fully read/, 'an absent copy has no read history');
        } else if (copy.lastFullRead) {
          assert.match(text, /last fully read: 20\d\d-\d\d-\d\d \d\d:\d\d UTC \((today|\d+ days? ago)\)/, `${backup}@${destination}`);
          assert.doesNotMatch(text, /never fully read/);
        } else {
          assert.match(text, /never fully read/, `${backup}@${destination}`);
        }
      }
    }
    // Every state appears somewhere in the matrix.
    for (const state of Object.keys(LABELS)) assert.match(matrix, new RegExp(`data-state="${state}"`), state);

    const cell = (backup: string, destination: string): string => {
      const row = rows.find((r) => r.includes(`data-backup="${backup}"`)) ?? '';
      return textOf(all(row, 'td').find((td) => td.includes(`data-label="${destination}"`)) ?? '');
    };
    assert.match(cell(B1, 'disk'), /last fully read: 2024-01-10 03:00 UTC \(10 days ago\)/);
    assert.match(cell(B2, 'disk'), /last fully read: 2024-01-20 11:30 UTC \(today\)/);
    assert.match(cell(B2, 'nas'), /\(1 day ago\)/);
    assert.match(cell(B1, 'nas'), /never fully read/);
    assert.match(cell(B2, 'disk'), /repaired 2 files from nas: binlogs\/insert_log\/1\/2\/3\/4\/5, meta\/collection_meta\.json/);
    assert.match(cell(B3, 'disk'), /2 damaged files/);
    assert.match(cell(B3, 'disk'), /40 files · 120\.0 MiB/);
    assert.ok(cell(B3, 'nas').includes(INCOMPLETE_MESSAGE));
    assert.ok(cell(B1, 'cloud').includes(ERROR_COPY_MESSAGE));

    // Banner, summary, destinations, damage list.
    const banner = textOf(element(dom, 'div', /class="banner/));
    assert.match(banner, /A destination could not be checked/);
    assert.match(banner, /could not check: cloud/);
    assert.match(banner, /damage found too: 2 copies damaged, incomplete or lost/);
    assert.match(banner, /exit code 4/);
    const summary = textOf(element(dom, 'div', /id="summary"/));
    assert.match(summary, /12 copies:.*5 ok.*1 repaired.*1 damaged.*1 incomplete.*1 in progress.*1 absent.*2 errors/);
    assert.match(textOf(dom), /read this run: 31 files, 93\.0 MiB/);
    assert.match(textOf(dom), /mode: rotate 7 \(each run reads the next 1\/7 of every destination\)/);

    const destinations = all(element(element(dom, 'table', /id="destinations"/), 'tbody', /./), 'tr');
    assert.equal(destinations.length, 3);
    const cloud = textOf(destinations[2] ?? '');
    assert.match(cloud, /^cloud/);
    assert.match(cloud, /Error/);
    assert.match(cloud, /3\/7/);
    assert.match(cloud, /2024-01-18 03:00 UTC \(2 days ago\)/);
    assert.ok(cloud.includes(CLOUD_MESSAGE));
    assert.match(textOf(destinations[1] ?? ''), /never/, 'nas never had a clean audit');

    const damage = all(element(element(dom, 'table', /id="damage"/), 'tbody', /./), 'tr');
    assert.equal(damage.length, 4, 'one row per damaged file');
    const evil = damage.find((r) => textOf(r).includes(EVIL_PATH));
    assert.ok(evil, 'the damage list names the hostile path');
    assert.match(textOf(evil), /^disk/);
    assert.match(textOf(evil), new RegExp(`${B3}`));
    assert.match(textOf(evil), /hash/);
    assert.match(textOf(evil), /still damaged/);
    const chunk = damage.find((r) => textOf(r).includes('binlogs/insert_log'));
    assert.match(textOf(chunk ?? ''), /chunk 2, bytes 16777216\.\.25165823/);
    assert.match(textOf(chunk ?? ''), /repaired from nas/);
  });

  it('the narrow (phone) layout renders as cards', async (t) => {
    if (!(await chromiumOrSkip(t))) return;
    mkdirSync(outDir, { recursive: true });
    const htmlPath = join(outDir, 'audit-report.html');
    writeFileSync(htmlPath, renderAuditHtml(mixedResult(), NOW));
    const pngPath = join(outDir, 'audit-report-mobile.png');
    await renderInChromium(htmlPath, { screenshot: pngPath, windowSize: [390, 1800] });
    const png = readFileSync(pngPath);
    assert.ok(png.subarray(0, 8).equals(PNG_SIGNATURE));
    assert.deepEqual(pngSize(png), { width: 390, height: 1800 });
  });

  it('the DOM check would catch an injected script (the check is not vacuous)', async (t) => {
    if (!(await chromiumOrSkip(t))) return;
    mkdirSync(outDir, { recursive: true });
    const bad = join(outDir, 'audit-report-unescaped.html');
    writeFileSync(bad, `<!DOCTYPE html><html><head><title>t</title></head><body><p>${EVIL_MESSAGE}</p></body></html>`);
    const { dom } = await renderInChromium(bad);
    assert.match(dom, /<script/i);
    assert.match(dom, /<title>pwned<\/title>/, 'Chromium ran the injected script');
  });

  it('escapes names and source it could not expect, in text and attributes', async (t) => {
    if (!(await chromiumOrSkip(t))) return;
    mkdirSync(outDir, { recursive: true });
    const htmlPath = join(outDir, 'audit-report-hostile.html');
    writeFileSync(htmlPath, renderAuditHtml(hostileResult(), NOW));
    const { dom } = await renderInChromium(htmlPath);
    assert.doesNotMatch(dom, /<(script|img|i|b)\b/i);
    assert.ok(textOf(dom).includes('<img src=x onerror=alert(1)> "src"'));
    assert.deepEqual(attrValues(dom, 'data-backup'), [HOSTILE_BACKUP], 'the backup name survives in its attribute');
    assert.deepEqual(attrValues(dom, 'data-destination'), [HOSTILE_DESTINATION, HOSTILE_DESTINATION], 'matrix column and destination row');
    assert.ok(attrValues(dom, 'data-label').includes(HOSTILE_DESTINATION), 'the cell names its destination');
    assert.equal(all(element(element(dom, 'table', /id="matrix"/), 'tbody', /./), 'tr').length, 1);
  });
});

describe('audit report HTML', () => {
  const html = renderAuditHtml(mixedResult(), NOW);

  it('is self-contained: no scripts, no fetches', () => {
    assert.doesNotMatch(html, /<script|<link|<img|<iframe|<object|<embed/i);
    assert.doesNotMatch(html, /\b(src|href|srcset|action)=/i);
    assert.doesNotMatch(html, /url\(|@import|https?:\/\//i);
    assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'/);
    assert.match(html, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
    assert.match(html, /^<!DOCTYPE html>\n<html lang="en">/);
  });

  it('holds nothing from the environment', () => {
    const secret = 'offsite-test-secret-7f3a9c';
    process.env['OFFSITE_TEST_FAKE_SECRET'] = secret;
    try {
      const again = renderAuditHtml(mixedResult(), NOW);
      assert.equal(again, html, 'the page depends only on the result and now');
      assert.ok(!again.includes(secret));
    } finally {
      delete process.env['OFFSITE_TEST_FAKE_SECRET'];
    }
  });

  it('the banner tells each exit state', () => {
    const state = (r: AuditResult): string => textOf(element(renderAuditHtml(r, NOW), 'div', /class="banner/));
    assert.match(state(intactResult()), /All copies intact.*exit code 0.*1 copy repaired this run/);
    assert.match(state(damagedResult()), /Damage found.*exit code 3.*1 copy damaged, incomplete or lost/);
    assert.match(state(mixedResult()), /A destination could not be checked.*exit code 4/);
    assert.match(renderAuditHtml(intactResult(), NOW), /class="banner exit-0"/);
    assert.match(renderAuditHtml(damagedResult(), NOW), /class="banner exit-3"/);
  });

  it('names the mode', () => {
    assert.match(textOf(renderAuditHtml(intactResult(), NOW)), /mode: sample 100%/);
    assert.match(textOf(renderAuditHtml(damagedResult(), NOW)), /mode: slice 2\/5/);
    assert.match(textOf(renderAuditHtml(damagedResult(), NOW)), /repair: off/);
  });

  it('says when there is no damage, and counts days from the given now', () => {
    const intact = intactResult();
    const clean: AuditResult = { ...intact, copies: intact.copies.map((c) => ({ ...c, damage: [], repaired: [], state: 'ok' })) };
    const page = renderAuditHtml(clean, new Date('2024-03-01T00:00:00Z'));
    assert.match(page, /id="no-damage">No damaged files found\./);
    assert.doesNotMatch(page, /id="damage"/);
    assert.match(textOf(page), /last fully read: 2024-01-20 11:00 UTC \(40 days ago\)/);
  });

  it('keeps a copy whose backup or destination the lists do not name', () => {
    const r = damagedResult();
    const page = renderAuditHtml({ ...r, copies: [...r.copies, { ...r.copies[0]!, backup: 'stray_backup', destination: 'elsewhere' }] }, NOW);
    assert.match(page, /<tr data-backup="stray_backup">/);
    assert.match(page, /<th scope="col" data-destination="elsewhere">/);
    assert.equal((page.match(/<td class="cell st-none"/g) ?? []).length, 3, 'cells without a result say so');
  });
});
