/**
 * The overlap refusals every command gets when it opens destinations (src/runtime/drivers.ts):
 * a destination that is the source or lies inside or around it, and two destinations that are
 * one place or nested, are refused with one `OverlapError` (exit 2). Locations and identities
 * are compared, never descriptions (src/drivers/overlap.ts, src/drivers/location.ts).
 */
import type { OffsiteConfig } from '../config/config.js';
import { createDriver } from '../drivers/index.js';
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

/** Builds a driver only to read its location and identity (no IO until `identify`); `undefined` when its section is invalid (the command that uses it says why). */
async function bareDriver(name: string, section: Readonly<Record<string, unknown>> | undefined): Promise<Driver | undefined> {
  if (!section) return undefined;
  try {
    return await createDriver(name, driverSectionOf(section));
  } catch {
    return undefined;
  }
}

/**
 * Refuses, with one `OverlapError` (exit 2), a destination that is the source or lies inside it
 * or around it, and two destinations that are one place or nested: every configured destination
 * by location, and `opened` plus the source by identity (real paths, device/inode; the source is
 * built here without retries when `source` is not given). `strict`: a place that cannot be
 * identified is an error too (prune, before it deletes).
 */
export async function refuseOverlaps(config: OffsiteConfig, opened: readonly Driver[], options: { source?: Driver; signal?: AbortSignal; strict?: boolean } = {}): Promise<void> {
  const built: Driver[] = [];
  try {
    const source = options.source ?? await bareDriver('source', config.source);
    if (source && !options.source) built.push(source);
    const others: Driver[] = [];
    for (const name of Object.keys(config.destinations)) {
      if (opened.some((d) => d.name === name)) continue;
      const driver = await bareDriver(name, config.destinations[name]);
      if (driver) { built.push(driver); others.push(driver); }
    }
    const sourcePlace = source ? [placeOf(source, 'source')] : [];
    const check = { file: config.path, signal: options.signal, strict: options.strict };
    // Every configured destination by its location (no IO)...
    refuseOverlappingLocations([...sourcePlace, ...[...opened, ...others].map((d) => placeOf(d, 'destination'))], check);
    // ...and the ones this command uses by identity.
    await refuseOverlappingPlaces([...sourcePlace, ...opened.map((d) => placeOf(d, 'destination'))], check);
  } finally {
    await Promise.all(built.map((d) => d.close().catch(() => undefined)));
  }
}
