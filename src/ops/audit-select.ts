/**
 * Which files of a copy an audit reads back (see ./audit.ts): a random sample, or one slice of a
 * deterministic division into slices of about equal bytes.
 *
 * Both are decided while the manifest's file list streams by (../manifest/read.ts), so that no
 * audit holds a copy's file list: a sample is drawn by selection sampling (each file in turn is
 * taken with probability wanted-left / files-left, which gives exactly the wanted number, every
 * set of that size equally likely); a slice needs every file's size first, so the sizes are read
 * in a first pass over the manifest into one number per file.
 */
import { randomInt } from 'node:crypto';
import type { Driver } from '../drivers/types.js';
import { manifestKey, type ManifestFile } from '../manifest/manifest.js';
import { streamManifestAt, type ManifestFieldsSoFar } from '../manifest/read.js';

/** Decides, for each file of a manifest in order, whether it is read back. */
export type ReadBackChooser = (file: ManifestFile, index: number, fieldsSoFar: ManifestFieldsSoFar) => boolean;

/**
 * Deals files into `t` slices of about equal bytes: largest first, each into the slice with the
 * fewest bytes so far (on a tie, the one with the fewest files, then the lowest number); files of
 * equal size go in the order of their positions. Returns each position's slice (1-based).
 */
export function slicesByPosition(sizes: ArrayLike<number>, t: number): Uint32Array {
  const order = new Uint32Array(sizes.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => (sizes[b] as number) - (sizes[a] as number) || a - b);
  const loads = new Float64Array(t);
  const counts = new Uint32Array(t);
  const slices = new Uint32Array(sizes.length);
  for (const position of order) {
    let best = 0;
    for (let i = 1; i < t; i++) {
      if ((loads[i] as number) < (loads[best] as number) || (loads[i] === loads[best] && (counts[i] as number) < (counts[best] as number))) best = i;
    }
    loads[best] = (loads[best] as number) + (sizes[position] as number);
    counts[best] = (counts[best] as number) + 1;
    slices[position] = best + 1;
  }
  return slices;
}

/**
 * `slicesByPosition` of files given in any order, ties by path (a manifest lists its files sorted
 * by path, so the two agree on every manifest offsite writes). Returns path -> slice (1-based).
 */
export function assignSlices(files: readonly Pick<ManifestFile, 'path' | 'size'>[], t: number): Map<string, number> {
  const byPath = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const slices = slicesByPosition(byPath.map((f) => f.size), t);
  return new Map(byPath.map((f, i) => [f.path, slices[i] as number]));
}

/**
 * A random `percent` of the files (at least one when there are any), drawn as they stream by. The
 * number of files is the manifest's `fileCount` (read before its file list), else `fallbackCount`.
 */
export function sampleChooser(percent: number, fallbackCount: number): ReadBackChooser {
  let total: number | undefined;
  let wanted = 0;
  let taken = 0;
  return (_file, index, fieldsSoFar) => {
    if (total === undefined) {
      const count = fieldsSoFar.fileCount;
      total = typeof count === 'number' && Number.isInteger(count) && count >= 0 ? count : fallbackCount;
      wanted = Math.min(total, Math.max(1, Math.ceil((total * percent) / 100)));
    }
    const need = wanted - taken;
    if (need <= 0) return false;
    const left = total - index;
    if (left <= need || randomInt(left) < need) { taken++; return true; }
    return false;
  };
}

/**
 * Slice `n` of `t` of the copy's files: reads the manifest once for the sizes. `undefined` when
 * there is no valid manifest to divide (the check that follows reports why); the chooser applies
 * to the manifest with `digest` only.
 */
export async function sliceChooser(driver: Driver, backup: string, slice: { readonly n: number; readonly t: number }, signal?: AbortSignal): Promise<{ readonly choose: ReadBackChooser; readonly digest: string } | undefined> {
  let sizes = new Float64Array(1024);
  let count = 0;
  const summary = await streamManifestAt(driver, manifestKey(backup), {
    signal,
    onFile: (file) => {
      if (count === sizes.length) {
        const larger = new Float64Array(sizes.length * 2);
        larger.set(sizes);
        sizes = larger;
      }
      sizes[count++] = file.size;
    },
  });
  if (!summary) return undefined;
  const slices = slicesByPosition(sizes.subarray(0, count), slice.t);
  return { choose: (_file, index) => slices[index] === slice.n, digest: summary.digest };
}
