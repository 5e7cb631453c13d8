/**
 * `offsite audit --report FILE`: the audit result as one self-contained HTML page, a
 * backups x destinations matrix with the state of each copy and when it was last read in full,
 * the destinations, and every damaged file.
 *
 * Self-contained: inline CSS, no scripts, no images, no fonts, no links to fetch; a
 * Content-Security-Policy meta tag forbids the page any fetch or script even if something
 * slipped in. Every text taken from the result is HTML-escaped (messages and paths may hold
 * `<&"`). States are told by a text label and a symbol, never by color alone. Narrow screens
 * get the matrix as one card per backup. The page holds only what the result holds (no
 * environment, no secrets).
 */
import { formatBytes } from '../config/units.js';
import type { Damage } from '../core/verify.js';
import type { AuditCopy, AuditDestination, AuditMode, AuditResult, CopyState } from './audit-result.js';

/** Every copy state, in the order the page lists them. */
export const COPY_STATES: readonly CopyState[] = ['ok', 'repaired', 'damaged', 'incomplete', 'lost', 'in-progress', 'absent', 'error'];

/** The text label, symbol and meaning of each state, as the page shows them. */
export const STATE_LABELS: Readonly<Record<CopyState, { readonly label: string; readonly symbol: string; readonly meaning: string }>> = {
  ok: { label: 'OK', symbol: '✓', meaning: 'every file present with its size; the files read back were intact' },
  repaired: { label: 'Repaired', symbol: '↻', meaning: 'damage was found and fixed; the fixed files read back intact' },
  damaged: { label: 'Damaged', symbol: '✗', meaning: 'a file is missing, short or changed, or the manifest is bad' },
  incomplete: { label: 'Incomplete', symbol: '◐', meaning: 'files without a manifest and no run copying them: nothing proves the copy whole' },
  lost: { label: 'Lost', symbol: '✗', meaning: 'an earlier audit found it intact here; it is gone and no prune removed it' },
  'in-progress': { label: 'In progress', symbol: '…', meaning: 'a replicate run is copying it right now; not judged' },
  absent: { label: 'Absent', symbol: '–', meaning: 'nothing here for this backup (not damage: replicate copies it)' },
  error: { label: 'Error', symbol: '⚠', meaning: 'could not be checked' },
};

const DESTINATION_STATUS: Readonly<Record<AuditDestination['status'], { readonly label: string; readonly symbol: string }>> = {
  ok: { label: 'OK', symbol: '✓' },
  damaged: { label: 'Damaged', symbol: '✗' },
  error: { label: 'Error', symbol: '⚠' },
};

const DAY_MS = 86_400_000;
/** Repaired paths named in a matrix cell; the damage list has them all. */
const PATHS_IN_CELL = 3;

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function parseTime(iso: string | undefined): Date | undefined {
  if (iso === undefined || iso === '') return undefined;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** `2024-01-15 10:30 UTC`; an unparsable value is shown as given. */
function formatTime(iso: string): string {
  const date = parseTime(iso);
  if (!date) return iso;
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** `today`, `1 day ago`, `12 days ago` (whole days before `now`). */
function daysAgo(iso: string, now: Date): string {
  const date = parseTime(iso);
  if (!date) return '';
  const days = Math.floor((now.getTime() - date.getTime()) / DAY_MS);
  if (days < 0) return 'in the future';
  if (days === 0) return 'today';
  return days === 1 ? '1 day ago' : `${days} days ago`;
}

function whenWithAge(iso: string, now: Date): string {
  const age = daysAgo(iso, now);
  return `<time datetime="${escapeHtml(iso)}">${escapeHtml(formatTime(iso))}</time>${age ? ` (${escapeHtml(age)})` : ''}`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** `rotate 7`, `slice 3/7`, `sample 5%`, with what it means. */
export function describeMode(mode: AuditMode): string {
  switch (mode.kind) {
    case 'rotate': return `rotate ${mode.t} (each run reads the next 1/${mode.t} of every destination)`;
    case 'slice': return `slice ${mode.n}/${mode.t} (read slice ${mode.n} of ${mode.t})`;
    case 'sample': return `sample ${mode.percent}% (a random ${mode.percent}% of the files read back)`;
  }
}

function damageDetail(d: Damage): string {
  if (d.problem === 'chunk' && d.chunk !== undefined) {
    const range = d.offset !== undefined && d.length !== undefined ? `, bytes ${d.offset}..${d.offset + d.length - 1}` : '';
    return `chunk ${d.chunk}${range}`;
  }
  return d.problem;
}

function stateBadge(state: CopyState): string {
  const s = STATE_LABELS[state];
  return `<span class="badge st-${state}"><span class="sym" aria-hidden="true">${s.symbol}</span> <span class="label">${escapeHtml(s.label)}</span></span>`;
}

function statusBadge(status: AuditDestination['status']): string {
  const s = DESTINATION_STATUS[status] ?? { label: String(status), symbol: '?' };
  return `<span class="badge ds-${escapeHtml(status)}"><span class="sym" aria-hidden="true">${s.symbol}</span> <span class="label">${escapeHtml(s.label)}</span></span>`;
}

function copyCell(copy: AuditCopy | undefined, destination: string, now: Date): string {
  const dataLabel = `data-label="${escapeHtml(destination)}"`;
  if (!copy) return `<td class="cell st-none" ${dataLabel}><span class="badge st-none"><span class="label">No result</span></span></td>`;
  const lines: string[] = [stateBadge(copy.state)];
  if (copy.files > 0 || copy.bytes > 0) {
    lines.push(`<div class="size">${escapeHtml(`${plural(copy.files, 'file')} · ${formatBytes(copy.bytes)}`)}</div>`);
  }
  if (copy.filesRead > 0) {
    lines.push(`<div class="read">${escapeHtml(`read this run: ${plural(copy.filesRead, 'file')}, ${formatBytes(copy.bytesRead)}`)}</div>`);
  }
  if (copy.state !== 'absent') {
    lines.push(copy.lastFullRead
      ? `<div class="full">last fully read: ${whenWithAge(copy.lastFullRead, now)}</div>`
      : '<div class="full never">never fully read</div>');
  }
  if (copy.repaired.length > 0) {
    const shown = copy.repaired.slice(0, PATHS_IN_CELL).map((p) => `<code>${escapeHtml(p)}</code>`).join(', ');
    const more = copy.repaired.length > PATHS_IN_CELL ? ` and ${copy.repaired.length - PATHS_IN_CELL} more` : '';
    const from = copy.repairedFrom ? ` from <strong>${escapeHtml(copy.repairedFrom)}</strong>` : '';
    lines.push(`<div class="repair">repaired ${escapeHtml(plural(copy.repaired.length, 'file'))}${from}: ${shown}${more}</div>`);
  }
  const open = copy.damage.filter((d) => !copy.repaired.includes(d.path));
  if (open.length > 0) lines.push(`<div class="dmg">${escapeHtml(plural(open.length, 'damaged file'))} (see below)</div>`);
  if (copy.message) lines.push(`<div class="msg">${escapeHtml(copy.message)}</div>`);
  return `<td class="cell st-${copy.state}" ${dataLabel} data-state="${copy.state}">${lines.join('')}</td>`;
}

const CSS = `
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--head:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;padding:16px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1400px;margin:0 auto}
h1{font-size:22px;margin:0 0 2px}
h2{font-size:17px;margin:26px 0 8px}
.sub{color:var(--muted);margin:0 0 12px}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.banner{border:1px solid;border-left-width:6px;border-radius:6px;padding:10px 14px;margin:12px 0;font-size:16px}
.banner strong{font-size:17px}
.banner.exit-0{background:#dafbe1;border-color:#1a7f37;color:#0f4f22}
.banner.exit-3{background:#ffebe9;border-color:#cf222e;color:#82071e}
.banner.exit-4{background:#fff8c5;border-color:#9a6700;color:#5c3d00}
.summary{margin:8px 0;display:flex;flex-wrap:wrap;gap:6px 18px}
.summary span{white-space:nowrap}.summary span.wrap{white-space:normal}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin:8px 0 10px;padding:0;list-style:none;color:var(--muted);font-size:12px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
thead th{background:var(--head);position:sticky;top:0}
th .desc,td .desc{display:block;font-weight:normal;color:var(--muted);font-size:12px;overflow-wrap:anywhere}
.matrix th[scope=row]{background:var(--head)}
.matrix{table-layout:fixed;min-width:640px}
.matrix thead th:first-child{width:20em}
#damage td:nth-child(3){min-width:16em}
.matrix th[scope=row]{overflow-wrap:anywhere}
.cell div{font-size:12px;margin-top:3px}
.size,.read{color:var(--muted)}
.never{color:#9a6700;font-weight:600}
.repair{color:#0a3069}
.dmg{color:#82071e;font-weight:600}
.msg{color:var(--fg);overflow-wrap:anywhere;white-space:pre-wrap}
.badge{display:inline-block;border:1px solid;border-radius:12px;padding:0 8px;font-weight:600;font-size:12px;white-space:nowrap}
td.st-ok{background:#f3fcf5}.badge.st-ok,.badge.ds-ok{background:#dafbe1;border-color:#1a7f37;color:#116329}
td.st-repaired{background:#f2f8ff}.badge.st-repaired{background:#ddf4ff;border-color:#0969da;color:#0a3069}
td.st-damaged{background:#fff3f2}.badge.st-damaged,.badge.ds-damaged{background:#ffebe9;border-color:#cf222e;color:#82071e}
td.st-incomplete{background:#fff7ef}.badge.st-incomplete{background:#fff1e5;border-color:#bc4c00;color:#762c00}
td.st-lost{background:#fff3f2}.badge.st-lost{background:#ffebe9;border-color:#cf222e;color:#82071e}
td.st-in-progress{background:#fbf7ff}.badge.st-in-progress{background:#fbefff;border-color:#8250df;color:#512a97}
td.st-absent{background:#fafbfc}.badge.st-absent,.badge.st-none{background:#f6f8fa;border-color:#818b98;color:#454c54}
td.st-error{background:#fffcea;background-image:repeating-linear-gradient(135deg,transparent 0 8px,rgba(154,103,0,.06) 8px 16px)}.badge.st-error,.badge.ds-error{background:#fff8c5;border-color:#9a6700;color:#5c3d00}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.none{color:var(--muted)}
footer{margin-top:28px;color:var(--muted);font-size:12px}
@media (max-width:700px){
 body{padding:10px}
 h1{font-size:19px}
 .matrix thead{display:none}
 .matrix,.matrix tbody,.matrix tr,.matrix th,.matrix td{display:block;width:100%}
 .matrix tr{margin:0 0 12px;border:1px solid var(--line);border-radius:6px;overflow:hidden}
 .matrix th[scope=row]{border:0;border-bottom:1px solid var(--line);white-space:normal;overflow-wrap:anywhere}
 .matrix{min-width:0}
 #damage td:nth-child(3){min-width:0}
 .matrix td{border:0;border-bottom:1px solid var(--line)}
 .matrix td::before{content:attr(data-label);display:block;font-weight:700;font-size:12px}
 .cards thead{display:none}
 .cards,.cards tbody,.cards tr,.cards td{display:block;width:100%}
 .cards tr{margin:0 0 12px;border:1px solid var(--line);border-radius:6px}
 .cards td{border:0;padding:3px 10px;text-align:left}
 .cards td::before{content:attr(data-label) ": ";font-weight:600;color:var(--muted)}
}
@media print{thead th{position:static}.scroll{overflow:visible}}
`;

function banner(result: AuditResult, counts: Map<CopyState, number>): string {
  const n = (s: CopyState): number => counts.get(s) ?? 0;
  const bad = n('damaged') + n('incomplete') + n('lost');
  const failing = result.destinations.filter((d) => d.status === 'error').map((d) => d.name);
  const notes: string[] = [];
  if (n('repaired') > 0) notes.push(`${plural(n('repaired'), 'copy', 'copies')} repaired this run`);
  if (n('in-progress') > 0) notes.push(`${plural(n('in-progress'), 'copy', 'copies')} in progress (not judged)`);
  if (n('absent') > 0) notes.push(`${plural(n('absent'), 'copy', 'copies')} absent (replicate copies them)`);
  let head: string;
  let detail: string;
  if (result.exitCode === 0) {
    head = 'All copies intact';
    detail = notes.join('; ');
  } else if (result.exitCode === 3) {
    head = 'Damage found';
    detail = [`${plural(bad, 'copy', 'copies')} damaged, incomplete or lost`, ...notes].join('; ');
  } else {
    head = 'A destination could not be checked';
    const parts = [failing.length > 0 ? `could not check: ${failing.join(', ')}` : `${plural(n('error'), 'copy', 'copies')} could not be checked`];
    if (bad > 0) parts.push(`damage found too: ${plural(bad, 'copy', 'copies')} damaged, incomplete or lost`);
    detail = [...parts, ...notes].join('; ');
  }
  const symbol = result.exitCode === 0 ? '✓' : result.exitCode === 3 ? '✗' : '⚠';
  return `<div class="banner exit-${result.exitCode}" role="status" data-exit-code="${result.exitCode}"><span aria-hidden="true">${symbol}</span> <strong>${escapeHtml(head)}</strong> <span class="exit">(exit code ${result.exitCode})</span>${detail ? `<div>${escapeHtml(detail)}</div>` : ''}</div>`;
}

/**
 * Renders the audit result as a self-contained HTML page. `now` is the moment "N days ago" is
 * counted from (default: the current time).
 */
export function renderAuditHtml(result: AuditResult, now: Date = new Date()): string {
  // Rows and columns: the result's order, then anything only the copies name (never dropped).
  const backups = [...result.backups];
  for (const c of result.copies) if (!backups.includes(c.backup)) backups.push(c.backup);
  const destinations = result.destinations.map((d) => d.name);
  for (const c of result.copies) if (!destinations.includes(c.destination)) destinations.push(c.destination);
  const byCell = new Map<string, AuditCopy>();
  for (const c of result.copies) byCell.set(`${c.backup}\u0000${c.destination}`, c);
  const described = new Map(result.destinations.map((d) => [d.name, d]));

  const counts = new Map<CopyState, number>();
  for (const c of result.copies) counts.set(c.state, (counts.get(c.state) ?? 0) + 1);
  const filesRead = result.destinations.reduce((sum, d) => sum + d.filesRead, 0);
  const bytesRead = result.destinations.reduce((sum, d) => sum + d.bytesRead, 0);
  const started = parseTime(result.startedAt);
  const finished = parseTime(result.finishedAt);
  const duration = started && finished ? formatDuration(finished.getTime() - started.getTime()) : '';

  const title = `offsite audit of ${result.source} — ${formatTime(result.finishedAt || result.startedAt)}`;
  const out: string[] = [];
  out.push('<!DOCTYPE html>');
  out.push('<html lang="en"><head><meta charset="utf-8">');
  out.push('<meta name="viewport" content="width=device-width, initial-scale=1">');
  out.push(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">`);
  out.push('<meta name="generator" content="offsite audit">');
  out.push(`<title>${escapeHtml(title)}</title>`);
  out.push(`<style>${CSS}</style></head><body><main>`);

  out.push('<header>');
  out.push(`<h1>offsite audit of <span class="source">${escapeHtml(result.source)}</span></h1>`);
  out.push(`<p class="sub">Started ${whenWithAge(result.startedAt, now)}, finished <time datetime="${escapeHtml(result.finishedAt)}">${escapeHtml(formatTime(result.finishedAt))}</time>${duration ? ` (took ${escapeHtml(duration)})` : ''}</p>`);
  out.push('</header>');

  out.push(banner(result, counts));

  const summary: string[] = [
    `<span><strong>${escapeHtml(plural(result.copies.length, 'copy', 'copies'))}</strong>:</span>`,
    ...COPY_STATES.map((s) => {
      const n = counts.get(s) ?? 0;
      const word = s === 'error' && n !== 1 ? 'errors' : STATE_LABELS[s].label.toLowerCase();
      return `<span data-summary="${s}">${n} ${escapeHtml(word)}</span>`;
    }),
  ];
  out.push(`<div class="summary" id="summary">${summary.join('')}</div>`);
  out.push(`<div class="summary"><span>read this run: <strong>${escapeHtml(`${plural(filesRead, 'file')}, ${formatBytes(bytesRead)}`)}</strong></span><span class="wrap">mode: <strong>${escapeHtml(describeMode(result.mode))}</strong></span><span>repair: <strong>${result.repair ? 'on' : 'off'}</strong></span></div>`);

  // The matrix.
  out.push('<h2 id="matrix-title">Copies</h2>');
  out.push(`<ul class="legend">${COPY_STATES.map((s) => `<li>${stateBadge(s)} ${escapeHtml(STATE_LABELS[s].meaning)}</li>`).join('')}</ul>`);
  if (backups.length === 0) {
    out.push('<p class="none">No backups at the source or the destinations.</p>');
  } else {
    out.push('<div class="scroll"><table class="matrix" id="matrix" aria-labelledby="matrix-title"><thead><tr><th scope="col">Backup</th>');
    for (const name of destinations) {
      const d = described.get(name);
      out.push(`<th scope="col" data-destination="${escapeHtml(name)}">${escapeHtml(name)}${d ? ` ${statusBadge(d.status)}<span class="desc">${escapeHtml(d.description)}</span>` : ''}</th>`);
    }
    out.push('</tr></thead><tbody>');
    for (const backup of backups) {
      out.push(`<tr data-backup="${escapeHtml(backup)}"><th scope="row">${escapeHtml(backup)}</th>`);
      for (const name of destinations) out.push(copyCell(byCell.get(`${backup}\u0000${name}`), name, now));
      out.push('</tr>');
    }
    out.push('</tbody></table></div>');
  }

  // Destinations.
  out.push('<h2>Destinations</h2>');
  const cols = ['Destination', 'Status', 'Copies', 'Files checked', 'Files read', 'Bytes read', 'Slice', 'Last success', 'Message'];
  out.push(`<div class="scroll"><table class="cards" id="destinations"><thead><tr>${cols.map((c) => `<th scope="col">${c}</th>`).join('')}</tr></thead><tbody>`);
  for (const d of result.destinations) {
    const cells = [
      `<td data-label="Destination"><strong>${escapeHtml(d.name)}</strong><span class="desc">${escapeHtml(d.description)}</span></td>`,
      `<td data-label="Status">${statusBadge(d.status)}</td>`,
      `<td data-label="Copies" class="num">${d.copies}</td>`,
      `<td data-label="Files checked" class="num">${d.filesChecked}</td>`,
      `<td data-label="Files read" class="num">${d.filesRead}</td>`,
      `<td data-label="Bytes read" class="num">${escapeHtml(formatBytes(d.bytesRead))}</td>`,
      `<td data-label="Slice">${d.slice ? `${d.slice.n}/${d.slice.t}` : '<span class="none">—</span>'}</td>`,
      `<td data-label="Last success">${d.lastSuccess ? whenWithAge(d.lastSuccess, now) : '<span class="never">never</span>'}</td>`,
      `<td data-label="Message" class="msg">${d.message ? escapeHtml(d.message) : '<span class="none">—</span>'}</td>`,
    ];
    out.push(`<tr data-destination="${escapeHtml(d.name)}">${cells.join('')}</tr>`);
  }
  out.push('</tbody></table></div>');

  // Damage.
  const damage = result.copies.flatMap((c) => c.damage.map((d) => ({ copy: c, d })));
  out.push(`<h2>Damage found (${damage.length})</h2>`);
  if (damage.length === 0) {
    out.push('<p class="none" id="no-damage">No damaged files found.</p>');
  } else {
    const dcols = ['Destination', 'Backup', 'Path', 'Problem', 'Message', 'Now'];
    out.push(`<div class="scroll"><table class="cards" id="damage"><thead><tr>${dcols.map((c) => `<th scope="col">${c}</th>`).join('')}</tr></thead><tbody>`);
    for (const { copy, d } of damage) {
      const fixed = copy.repaired.includes(d.path);
      const status = fixed
        ? `<span class="badge st-repaired">repaired${copy.repairedFrom ? ` from ${escapeHtml(copy.repairedFrom)}` : ''}</span>`
        : `<span class="badge st-damaged">still damaged</span>`;
      out.push(`<tr><td data-label="Destination">${escapeHtml(copy.destination)}</td><td data-label="Backup">${escapeHtml(copy.backup)}</td>`
        + `<td data-label="Path"><code>${escapeHtml(d.path)}</code></td><td data-label="Problem">${escapeHtml(damageDetail(d))}</td>`
        + `<td data-label="Message" class="msg">${escapeHtml(d.message)}</td><td data-label="Now">${status}</td></tr>`);
    }
    out.push('</tbody></table></div>');
  }

  out.push(`<footer>Generated by offsite at ${escapeHtml(formatTime(now.toISOString()))}. "Last fully read" is when every file of the copy was last read back and found intact.</footer>`);
  out.push('</main></body></html>\n');
  return out.join('\n');
}
