/** `offsite list` as a library function. */
import { listBackupSummaries, type BackupInspection } from '../backup/index.js';
import type { OffsiteConfig } from '../config/config.js';
import { manifestKey } from '../manifest/manifest.js';
import { streamManifestAt } from '../manifest/read.js';
import { withRuntime } from '../runtime/drivers.js';

export interface ListResult {
  readonly source: string;
  readonly backups: readonly {
    readonly name: string;
    readonly state: BackupInspection['state'];
    readonly reason?: string;
    readonly files: number;
    readonly bytes: number;
    readonly lastChange: string;
    /** Destination name -> `complete` (valid manifest), `absent`, or an error message. */
    readonly copies: Readonly<Record<string, string>>;
  }[];
  /** What the listing of the source skipped, one line each (see `listBackupFolders`). */
  readonly warnings: readonly string[];
  /** Destinations whose copies could not be read (an `error: ...` in `copies`). */
  readonly unreadable: readonly string[];
}

/** `offsite list`: backups at the source with their state and where complete copies exist. */
export async function listCommand(config: OffsiteConfig, options: { destinations?: readonly string[]; signal?: AbortSignal } = {}): Promise<ListResult> {
  return withRuntime(config, {}, async (runtime) => {
    const source = await runtime.source();
    const destinations = await runtime.destinations(options.destinations ?? []);
    const warnings: string[] = [];
    const unreadable = new Set<string>();
    const backups = await listBackupSummaries(source, { quietPeriodMs: config.settings.quietPeriodMs, signal: options.signal, onWarning: (m) => warnings.push(m) });
    const rows = [];
    for (const b of backups) {
      const copies: Record<string, string> = {};
      await Promise.all(destinations.map(async (d) => {
        try {
          // Streamed: read whole and its digest checked, without holding its file list.
          copies[d.name] = (await streamManifestAt(d, manifestKey(b.name), { signal: options.signal })) ? 'complete' : 'absent';
        } catch (err) {
          copies[d.name] = `error: ${(err as Error).message}`;
          unreadable.add(d.name);
        }
      }));
      rows.push({ name: b.name, state: b.state, reason: b.reason, files: b.fileCount, bytes: b.totalBytes, lastChange: new Date(b.lastChangeMs).toISOString(), copies });
    }
    return { source: source.description, backups: rows, warnings, unreadable: destinations.map((d) => d.name).filter((n) => unreadable.has(n)) };
  });
}
