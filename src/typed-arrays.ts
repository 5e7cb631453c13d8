/**
 * Columns of the compact per-file tables (src/core/records.ts, src/core/origin-table.ts,
 * src/core/reuse-index.ts, src/listing-index.ts, src/core/fingerprint-column.ts): one typed array per
 * field, grown as files come.
 */
export type Column = Uint8Array | Uint16Array | Uint32Array | Float64Array | BigUint64Array;

/** A new column of the same kind as `column`, `length` long, holding its values (the rest zero). */
export function widened<T extends Column>(column: T, length: number): T {
  const next = new (column.constructor as new (length: number) => T)(length);
  (next as { set(values: T): void }).set(column);
  return next;
}
