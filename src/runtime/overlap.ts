/**
 * The overlap refusals every command gets when it opens destinations (src/runtime/drivers.ts):
 * a destination that is the source or lies inside or around it, and two destinations that are
 * one place or nested, are refused with one `OverlapError` (exit 2). Locations and identities
 * are compared, never descriptions (src/drivers/overlap.ts, src/drivers/location.ts).
 */
import type { OffsiteConfig } from '../config/config.js';
import { configuredPlace, createDriver, identifiesItself } from '../drivers/index.js';
import { refuseOverlappingLocations, refuseOverlappingPlaces, type Place } from '../drivers/overlap.js';
import type { Driver } from '../drivers/types.js';

/** Keys of a driver section that belong to the runtime, not to the driver. */
export const RUNTIME_KEYS: readonly string[] = ['bwlimit', 'reuse', 'encryption', 'trustEtags'];

/** A driver's config section without the runtime's keys. */
export function driverSectionOf(section: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(section).filter(([k]) => !RUNTIME_KEYS.includes(k)));
}

/** A place for the overlap checks (src/drivers/overlap.ts). */
export function placeOf(driver: Driver, role: Place['role']): Place {
  return {
    role, name: driver.name, description: driver.description, location: driver.location,
    ...(driver.identify ? { identify: (o?: { signal?: AbortSignal }) => (driver.identify as NonNullable<Driver['identify']>)(o) } : {}),
  };
}

/**
 * The place of a configured section that this command does not open: its location and
 * description from its options, without building its driver (no SSH or AWS library loaded for
 * a command that does not use them); `undefined` when the section is invalid (the command that
 * uses it says why).
 */
function configuredOnly(name: string, section: Readonly<Record<string, unknown>> | undefined, role: Place['role']): Place | undefined {
  if (!section) return undefined;
  try {
    return { role, name, ...configuredPlace(name, driverSectionOf(section)) };
  } catch {
    return undefined;
  }
}

/** Builds a driver only to read its identity (no IO until `identify`); `undefined` when its section is invalid. */
async function bareDriver(name: string, section: Readonly<Record<string, unknown>>): Promise<Driver | undefined> {
  try {
    return await createDriver(name, driverSectionOf(section));
  } catch {
    return undefined;
  }
}

/** Whether a section's drivers may be identified (local and SFTP folders); false for an invalid section. */
function identifiable(name: string, section: Readonly<Record<string, unknown>>): boolean {
  try {
    return identifiesItself(name, driverSectionOf(section));
  } catch {
    return false;
  }
}

/**
 * Refuses, with one `OverlapError` (exit 2), a destination that is the source or lies inside it
 * or around it, and two destinations that are one place or nested: every configured destination
 * by location (from its config: destinations not in `opened` are not built), and `opened` plus
 * the source by identity (real paths, device/inode; when `source` is not given, a source that can
 * be identified, a local or SFTP folder, is built here without retries; a bucket is its location).
 * `strict`: a place that cannot be identified is an error too (prune, before it deletes).
 */
export async function refuseOverlaps(config: OffsiteConfig, opened: readonly Driver[], options: { source?: Driver; signal?: AbortSignal; strict?: boolean } = {}): Promise<void> {
  let built: Driver | undefined;
  try {
    let sourcePlace: Place | undefined;
    if (options.source) sourcePlace = placeOf(options.source, 'source');
    else if (config.source && identifiable('source', config.source)) {
      built = await bareDriver('source', config.source);
      sourcePlace = built && placeOf(built, 'source');
    } else {
      sourcePlace = configuredOnly('source', config.source, 'source');
    }
    const others: Place[] = [];
    for (const name of Object.keys(config.destinations)) {
      if (opened.some((d) => d.name === name)) continue;
      const place = configuredOnly(name, config.destinations[name], 'destination');
      if (place) others.push(place);
    }
    const sources = sourcePlace ? [sourcePlace] : [];
    const check = { file: config.path, signal: options.signal, strict: options.strict };
    // Every configured destination by its location (no IO)...
    refuseOverlappingLocations([...sources, ...opened.map((d) => placeOf(d, 'destination')), ...others], check);
    // ...and the ones this command uses by identity.
    await refuseOverlappingPlaces([...sources, ...opened.map((d) => placeOf(d, 'destination'))], check);
  } finally {
    await built?.close().catch(() => undefined);
  }
}
