/** The encrypted file format: round trips, and every tamper is found and names its chunk. */
import assert from 'node:assert/strict';
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { ChunkIntegrityError, ChunkReader, FileSealer, OVERHEAD_BYTES, fileMac, openBuffer, openChunksOf, openChunksOfStream, plainSize, sealBuffer, storedSize } from '../../src/crypto/format.js';
import { DestinationKey, EncryptionKeyError, destinationKeyOf, verifySignature } from '../../src/crypto/keys.js';

const CHUNK = 1024;
const key = new DestinationKey('vault', Buffer.alloc(32, 7));
const otherKey = new DestinationKey('vault', Buffer.alloc(32, 8));
const PATH = 'binlogs/insert_log/1/2/3/100/4589';

/** A chunk's stored range [start, end) in a stored file of full chunks. */
function chunkRange(i: number): [number, number] {
  const start = i * (CHUNK + OVERHEAD_BYTES);
  return [start, start + CHUNK + OVERHEAD_BYTES];
}

function failsAt(fn: () => unknown, chunk: number, path = PATH): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ChunkIntegrityError, `expected ChunkIntegrityError, got ${String(err)}`);
    assert.equal(err.chunk, chunk);
    assert.equal(err.kind, 'integrity');
    assert.match(err.message, new RegExp(`destination "vault": ${path}: encrypted chunk ${chunk} `));
    return true;
  });
}

describe('encrypted file format', () => {
  it('seals a fixed input to the same bytes as ever: what is stored stays readable, resumable and reusable', () => {
    const fixed = new DestinationKey('vault', Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex'));
    const plain = Buffer.alloc(2500);
    for (let i = 0; i < plain.length; i++) plain[i] = (i * 7) & 255;
    const stored = sealBuffer(fixed, 'bk/binlogs/insert_log/1/2/3/100/7', plain, 1024);
    assert.equal(stored.length, 2644);
    // Format version 2 as written since the identity became the path inside the backup.
    assert.equal(createHash('sha256').update(stored).digest('hex'), '2d8c78d8d5e6ceb0c2d97b541a9ff2c09b9d9fd599d047d54b936fdb3ba808e5');
    assert.ok(openBuffer(fixed, 'bk/binlogs/insert_log/1/2/3/100/7', stored).equals(plain));
  });

  it('derives a file\'s keys with HKDF-SHA256 exactly as hkdfSync does', () => {
    const secret = Buffer.alloc(32, 7);
    const fixed = new DestinationKey('vault', secret);
    for (const id of ['', 'binlogs/insert_log/1/2/3/100/4589', 'ünïcödé/'.repeat(20)]) {
      const salt = Buffer.from(id, 'utf8');
      const { fileKey, nonceKey } = fixed.fileKeys(salt);
      assert.ok(fileKey.equals(Buffer.from(hkdfSync('sha256', secret, salt, 'offsite/enc/v1 file key', 32))), `file key of ${JSON.stringify(id)}`);
      assert.ok(nonceKey.equals(Buffer.from(hkdfSync('sha256', secret, salt, 'offsite/enc/v1 nonce key', 32))), `nonce key of ${JSON.stringify(id)}`);
    }
  });

  it('round-trips files of 0, 1, a chunk, a chunk + 1 and several chunks, at the predicted sizes', () => {
    for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17]) {
      const plain = randomBytes(size);
      const stored = sealBuffer(key, PATH, plain, CHUNK);
      assert.equal(stored.length, storedSize(size, CHUNK), `stored size of ${size}`);
      assert.equal(plainSize(stored.length, CHUNK), size);
      assert.deepEqual(openBuffer(key, PATH, stored), plain);
      // Any piece size: a stream that splits chunks anywhere.
      const pieces: Buffer[] = [];
      for (let at = 0; at < stored.length; at += 97) pieces.push(stored.subarray(at, at + 97));
      assert.deepEqual(Buffer.concat([...openChunksOf(key, PATH, pieces)]), plain);
    }
  });

  it('decrypts a read stream, and a damaged chunk in it fails before later plain chunks are yielded', async () => {
    const plain = randomBytes(3 * CHUNK + 100);
    const stored = sealBuffer(key, PATH, plain, CHUNK);
    const collect = async (bytes: Buffer): Promise<Buffer[]> => {
      const out: Buffer[] = [];
      for await (const chunk of openChunksOfStream(key, PATH, Readable.from([bytes.subarray(0, 1500), bytes.subarray(1500)]))) out.push(chunk);
      return out;
    };
    assert.deepEqual(Buffer.concat(await collect(stored)), plain);
    const bad = Buffer.from(stored);
    bad.writeUInt8(bad.readUInt8(chunkRange(2)[0] + 5) ^ 0x80, chunkRange(2)[0] + 5);
    await assert.rejects(collect(bad), (err: unknown) => err instanceof ChunkIntegrityError && err.chunk === 2);
  });

  it('stores no plaintext; the same file at the same place gives the same bytes (resume), elsewhere other bytes', () => {
    const plain = Buffer.from('milvus segment 4589 row data '.repeat(200));
    const a = sealBuffer(key, PATH, plain, CHUNK);
    const b = sealBuffer(key, PATH, plain, CHUNK);
    const c = sealBuffer(key, `${PATH}0`, plain, CHUNK);
    assert.equal(a.indexOf('milvus segment'), -1);
    assert.equal(a.indexOf('row data'), -1);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.subarray(0, 200), c.subarray(0, 200));
    // Equal chunks inside one file get different nonces and bytes.
    const same = sealBuffer(key, PATH, Buffer.alloc(3 * CHUNK, 7), CHUNK);
    assert.notDeepEqual(same.subarray(...chunkRange(0)), same.subarray(...chunkRange(1)));
  });

  it('stored chunk i covers plain chunk i: chunks sealed apart and in any order join into the file', () => {
    const plain = randomBytes(3 * CHUNK + 5);
    const sealer = new FileSealer(key, PATH, CHUNK);
    const parts = [3, 1, 0, 2].map((i) => [i, sealer.seal(i, plain.subarray(i * CHUNK, (i + 1) * CHUNK), i === 3).bytes] as const).sort((x, y) => x[0] - y[0]);
    const stored = Buffer.concat(parts.map(([, b]) => b));
    assert.deepEqual(openBuffer(key, PATH, stored), plain);
    assert.deepEqual(stored, sealBuffer(key, PATH, plain, CHUNK));
  });

  it('the file MAC is the same on both sides, keyed, and differs for another content', () => {
    const plain = randomBytes(2 * CHUNK + 3);
    const sealer = new FileSealer(key, PATH, CHUNK);
    const macs = [0, 1, 2].map((i) => sealer.seal(i, plain.subarray(i * CHUNK, (i + 1) * CHUNK), i === 2).mac);
    const reader = new ChunkReader(key, PATH);
    const out = [...reader.push(sealBuffer(key, PATH, plain, CHUNK)), ...reader.end()];
    assert.deepEqual(Buffer.concat(out), plain);
    assert.equal(reader.fileMac(), fileMac(key, plain.length, CHUNK, macs));
    assert.match(reader.fileMac(), /^hmac-sha256:[0-9a-f]{64}$/);
    assert.notEqual(fileMac(otherKey, plain.length, CHUNK, macs), reader.fileMac());
    plain[0] = (plain[0] as number) ^ 1;
    const other = new ChunkReader(key, PATH);
    void [...other.push(sealBuffer(key, PATH, plain, CHUNK)), ...other.end()];
    assert.notEqual(other.fileMac(), reader.fileMac());
  });

  it('a flipped byte anywhere in a chunk names that chunk', () => {
    const stored = sealBuffer(key, PATH, randomBytes(4 * CHUNK), CHUNK);
    for (const [chunk, offset] of [[0, 40], [1, chunkRange(1)[0] + 500], [2, chunkRange(2)[1] - 1], [3, chunkRange(3)[0] + 25]] as const) {
      const bad = Buffer.from(stored);
      bad.writeUInt8(bad.readUInt8(offset) ^ 0x01, offset);
      failsAt(() => openBuffer(key, PATH, bad), chunk);
    }
  });

  it('a changed prefix is found (chunk size, magic), and a lost start is not an empty file', () => {
    const stored = sealBuffer(key, PATH, randomBytes(2 * CHUNK), CHUNK);
    const size = Buffer.from(stored);
    size.writeUInt32BE(CHUNK + 16, 8);
    assert.throws(() => openBuffer(key, PATH, size), ChunkIntegrityError);
    const magic = Buffer.from(stored);
    magic[0] = 0;
    failsAt(() => openBuffer(key, PATH, magic), 0);
    failsAt(() => openBuffer(key, PATH, stored.subarray(10)), 0);
    failsAt(() => openBuffer(key, PATH, Buffer.alloc(0)), 0);
  });

  it('reordered chunks are found at the first moved one', () => {
    const stored = sealBuffer(key, PATH, randomBytes(4 * CHUNK), CHUNK);
    const swapped = Buffer.concat([stored.subarray(...chunkRange(0)), stored.subarray(...chunkRange(2)), stored.subarray(...chunkRange(1)), stored.subarray(...chunkRange(3))]);
    failsAt(() => openBuffer(key, PATH, swapped), 1);
  });

  it('truncation at a chunk boundary, inside a chunk, and an extra chunk are all found', () => {
    const stored = sealBuffer(key, PATH, randomBytes(3 * CHUNK), CHUNK);
    failsAt(() => openBuffer(key, PATH, stored.subarray(0, chunkRange(1)[1])), 1); // chunks 0-1 of 3: 1 was not last
    failsAt(() => openBuffer(key, PATH, stored.subarray(0, chunkRange(2)[1] - 10)), 2);
    const extended = Buffer.concat([stored, stored.subarray(...chunkRange(1))]);
    failsAt(() => openBuffer(key, PATH, extended), 2); // the real last chunk opened as not last
  });

  it('chunks cannot move between files: another file with the same key, or its whole stored copy under this name', () => {
    const plain = randomBytes(2 * CHUNK);
    const mine = sealBuffer(key, PATH, plain, CHUNK);
    const theirs = sealBuffer(key, 'binlogs/insert_log/1/2/3/100/9999', plain, CHUNK);
    const mixed = Buffer.concat([mine.subarray(...chunkRange(0)), theirs.subarray(...chunkRange(1))]);
    failsAt(() => openBuffer(key, PATH, mixed), 1);
    failsAt(() => openBuffer(key, PATH, theirs), 0);
  });

  it('the identity is the path inside the backup: the same path in another backup gives the same bytes (reuse), another path fails', () => {
    const plain = randomBytes(2 * CHUNK + 3);
    const night1 = sealBuffer(key, `backup_1/${PATH}`, plain, CHUNK);
    assert.deepEqual(sealBuffer(key, `backup_2/${PATH}`, plain, CHUNK), night1);
    assert.deepEqual(openBuffer(key, `backup_2/${PATH}`, night1), plain);
    failsAt(() => openBuffer(key, `backup_2/${PATH}0`, night1), 0, `backup_2/${PATH}0`);
  });

  it('a wrong key is a clear error naming the destination, never garbage and never the key', () => {
    const stored = sealBuffer(key, PATH, randomBytes(CHUNK), CHUNK);
    assert.throws(() => openBuffer(otherKey, PATH, stored), (err: unknown) => {
      assert.ok(err instanceof EncryptionKeyError);
      assert.equal(err.kind, 'auth');
      assert.match(err.message, /destination "vault": the encryption key does not open this copy/);
      return true;
    });
  });
});

describe('destination keys', () => {
  const hex = 'ab'.repeat(32);
  it('reads a key as hex, base64 or a key file, and refuses anything else without showing it', () => {
    const a = destinationKeyOf('vault', { key: hex });
    const b = destinationKeyOf('vault', { key: Buffer.from(hex, 'hex').toString('base64') });
    assert.equal(a.publicKey, b.publicKey);
    const dir = mkdtempSync(join(tmpdir(), 'offsite-key-'));
    try {
      writeFileSync(join(dir, 'text'), `${hex}\n`);
      writeFileSync(join(dir, 'raw'), Buffer.from(hex, 'hex'));
      assert.equal(destinationKeyOf('vault', { keyFile: join(dir, 'text') }).publicKey, a.publicKey);
      assert.equal(destinationKeyOf('vault', { keyFile: join(dir, 'raw') }).publicKey, a.publicKey);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const secret = 'correct horse battery staple';
    assert.throws(() => destinationKeyOf('vault', { key: secret }), (err: unknown) => {
      assert.ok(err instanceof EncryptionKeyError);
      assert.match(err.message, /destination "vault": encryption.key must be 32 random bytes/);
      assert.ok(!err.message.includes(secret), 'the value is never in the message');
      return true;
    });
    assert.throws(() => destinationKeyOf('vault', {}), /exactly one of "key"/);
    assert.throws(() => destinationKeyOf('vault', { key: hex, keyFile: 'k' }), /exactly one of "key"/);
  });

  it('never shows the key in inspect or JSON', () => {
    const k = destinationKeyOf('vault', { key: hex });
    assert.ok(!inspect(k).includes('abab') && !inspect(k).includes('171'));
    assert.ok(!JSON.stringify({ k }).includes('abab'));
  });

  it('signs with Ed25519: the public key alone checks, a changed manifest or another key fails', () => {
    const manifest = Buffer.from('{"files":[["a",1,"00"]]}');
    const signature = key.sign(manifest);
    assert.ok(verifySignature(key.publicKey, manifest, signature));
    assert.ok(!verifySignature(key.publicKey, Buffer.from('{"files":[["a",2,"00"]]}'), signature));
    assert.ok(!verifySignature(key.publicKey, manifest, otherKey.sign(manifest)));
    assert.notEqual(key.publicKey, otherKey.publicKey);
    assert.equal(key.publicKey, new DestinationKey('x', Buffer.alloc(32, 7)).publicKey, 'derived, so stable');
  });

  it('the plaintext MAC is keyed: the same bytes under another key give another value', () => {
    const mac = (k: DestinationKey): string => k.plaintextMac().update('row data').digest('hex');
    assert.equal(mac(key), mac(new DestinationKey('x', Buffer.alloc(32, 7))));
    assert.notEqual(mac(key), mac(otherKey));
  });
});
