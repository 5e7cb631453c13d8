/**
 * Strings that cost only their characters. A replicate run keeps a path and a fingerprint or two
 * for every file of a backup (100,000 and more, issue 13), and how V8 builds a string decides what
 * each one holds on to:
 * - a template literal or `a + b` makes a rope (a cons cell per piece, each piece a string of its
 *   own): `local:${size}:${mtime}:${inode}` held ~250 bytes where its 40 characters need ~64;
 * - `slice` of 13 characters or more makes a view that keeps the whole sliced string alive (a
 *   path relative to the backup kept its 140-character source key).
 * Reading a character of a rope makes V8 flatten it into one string (a later GC drops the cells);
 * a view is copied by flattening a new rope made of it. (`value | 0`, another known way to
 * flatten, is not reliable: optimized code may skip the conversion.)
 */

/** `text` flattened in place into one string (see the file comment); returns it. */
export function flatString(text: string): string {
  text.charCodeAt(0);
  return text;
}

/** A flat string equal to `text` that holds on to nothing else (not a view into a longer string). */
export function ownString(text: string): string {
  if (text.length < 2) return text;
  return flatString(text.charAt(0) + text.slice(1));
}
