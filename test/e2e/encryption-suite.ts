/**
 * Client-side encryption end to end through the CLI (issue 14), the same cases for every kind of
 * destination (local folder, sshd, Ceph RGW): only how a test reaches the stored bytes differs
 * (`StoredBytes`). A copy is replicated encrypted; its stored bytes hold no plaintext; an auditor
 * without the key (a config with only the public key, or none) proves it intact, finds a flipped
 * byte (exit 3) and a forged manifest; pull with the key gives the backup back byte for byte; a
 * wrong key is a configuration error (exit 2) naming the destination that writes nothing; the key
 * never shows in any output. The auditor's public key is the one `offsite key` prints.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, runCli, tempDir, treeDigest, type CliRun } from '../helpers/cli.js';
import { OVERHEAD_BYTES, storedSize } from '../../src/crypto/format.js';
import { DestinationKey } from '../../src/crypto/keys.js';
import { manifestDigest, type Manifest } from '../../src/manifest/manifest.js';

const NAME = 'backup_2025_10_02_03_00_00';
const CHUNK = 64 * 1024;

/** How a test reads and changes the stored objects of the destination (keys relative to its root). */
export interface StoredBytes {
  keys(prefix: string): Promise<string[]>;
  read(key: string): Promise<Buffer>;
  write(key: string, bytes: Buffer): Promise<void>;
}

export interface EncryptedDestination {
  /** The destination's config section without `encryption`. */
  readonly section: Record<string, unknown>;
  readonly stored: StoredBytes;
}

interface VerifyJson { results: { destination: string; status: string; damage: { path: string; problem: string; chunk?: number; message: string }[] }[] }
interface ReplicateJson { destinations: { name: string; status: string; filesCopied: number; bytesWritten: number }[] }

export function encryptionSuite(title: string, open: (label: string) => Promise<EncryptedDestination>): void {
  describe(`client-side encryption, ${title} (CLI)`, () => {
    const keyHex = randomBytes(32).toString('hex');
    const wrongHex = randomBytes(32).toString('hex');
    const publicKey = new DestinationKey('vault', Buffer.from(keyHex, 'hex')).publicKey;
    const env = { OFFSITE_KEY: keyHex, WRONG_KEY: wrongHex };
    const outputs: CliRun[] = [];
    let dir: string;
    let source: string;
    let destination: EncryptedDestination;
    let original: Map<string, string>;
    /** Config paths: with the key, with the public key only, with nothing, with a wrong key. */
    const configs: Record<'keyed' | 'auditor' | 'bare' | 'wrong', string> = { keyed: '', auditor: '', bare: '', wrong: '' };

    const cli = async (config: keyof typeof configs, args: string[]): Promise<CliRun> => {
      const run = await runCli(['--config', configs[config], ...args], { env });
      outputs.push(run);
      return run;
    };
    const dataKeys = async (): Promise<string[]> => (await destination.stored.keys(`${NAME}/`)).filter((k) => !k.includes('/.offsite/'));

    before(async () => {
      dir = tempDir(`enc-${title.replace(/\W+/g, '-')}`);
      source = join(dir, 'backups');
      await generateBackup({ root: source, name: NAME, totalBytes: 2 * 1024 * 1024, seed: 14 });
      original = treeDigest(join(source, NAME));
      destination = await open(title.replace(/\W+/g, '-'));
      const write = (name: keyof typeof configs, encryption: Record<string, unknown> | undefined): void => {
        configs[name] = join(dir, `${name}.yaml`);
        writeFileSync(configs[name], stringify({
          source: { type: 'local', root: source },
          destinations: { vault: { ...destination.section, ...(encryption ? { encryption } : {}) } },
          options: { quietPeriod: '0s', chunkSize: '64KiB' },
        }));
      };
      write('keyed', { key: '${OFFSITE_KEY}' });
      // The auditor's public key as a user gets it: printed by `offsite key` from the keyed config.
      const printed = await runCli(['--config', configs.keyed, '--json', 'key', '--at', 'vault'], { env });
      assert.equal(printed.code, 0, printed.stdout + printed.stderr);
      assert.deepEqual(jsonOf<{ keys: { publicKey: string }[] }>(printed).keys.map((k) => k.publicKey), [publicKey]);
      outputs.push(printed);
      write('auditor', { publicKey });
      write('bare', undefined);
      write('wrong', { key: '${WRONG_KEY}' });
    });

    it('replicates encrypted: stored sizes are the sealed sizes and no stored file holds plaintext of its source', async () => {
      const run = await cli('keyed', ['--json', 'replicate', NAME, '--to', 'vault']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const result = jsonOf<ReplicateJson>(run);
      assert.equal(result.destinations[0]?.status, 'complete');
      const keys = await dataKeys();
      assert.equal(keys.length, original.size, 'every file is stored, under its own name');
      for (const key of keys) {
        const plain = readFileSync(join(source, key));
        const stored = await destination.stored.read(key);
        assert.equal(stored.length, storedSize(plain.length, CHUNK), `${key}: sealed size`);
        assert.equal(stored.subarray(0, 4).toString('latin1'), 'OFSE');
        // Known content: windows of the source file (meta JSON and binlog bytes alike).
        for (const at of [0, Math.floor(plain.length / 2), Math.max(0, plain.length - 24)]) {
          const window = plain.subarray(at, at + 24);
          if (window.length >= 16) assert.equal(stored.indexOf(window), -1, `${key}: plaintext at ${at} found in the stored bytes`);
        }
      }
      const manifest = await destination.stored.read(`${NAME}/.offsite/manifest.json`);
      assert.ok(!manifest.includes('hmac-sha256:') || manifest.toString().includes('"mac"'), 'the manifest keeps MACs under "mac"');
      const parsed = JSON.parse(manifest.toString()) as Manifest;
      assert.equal(parsed.encryption?.publicKey, publicKey);
      assert.match(parsed.signature ?? '', /^ed25519:/);
      for (const f of parsed.files) {
        assert.equal(f.storedSize, storedSize(f.size, CHUNK));
        assert.match(f.mac ?? '', /^hmac-sha256:[0-9a-f]{64}$/);
      }
    });

    it('a second run sends nothing', async () => {
      const run = await cli('keyed', ['--json', 'replicate', NAME, '--to', 'vault']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(jsonOf<ReplicateJson>(run).destinations[0]?.bytesWritten ?? 0, 0);
    });

    it('verify --deep, audit and list work without the key (public key only, and no encryption config at all)', async () => {
      for (const config of ['auditor', 'bare'] as const) {
        const verify = await cli(config, ['--json', 'verify', NAME, '--at', 'vault', '--deep']);
        assert.equal(verify.code, 0, `${config}: ${verify.stdout}${verify.stderr}`);
        assert.equal(jsonOf<VerifyJson>(verify).results[0]?.status, 'ok');
      }
      const audit = await cli('auditor', ['--json', 'audit', '--sample', '100%']);
      assert.equal(audit.code, 0, audit.stdout + audit.stderr);
      const list = await cli('bare', ['--json', 'list']);
      assert.equal(list.code, 0, list.stdout + list.stderr);
      assert.match(list.stdout, /"vault":\s*"complete"/);
    });

    it('an auditor without the key finds a flipped byte, naming the file and the chunk (exit 3)', async () => {
      const keys = await dataKeys();
      const victim = keys.find((k) => k.includes('insert_log') && storedSize(readFileSync(join(source, k)).length, CHUNK) > 2 * (CHUNK + OVERHEAD_BYTES)) ?? keys[0] as string;
      const good = await destination.stored.read(victim);
      const bad = Buffer.from(good);
      const at = CHUNK + OVERHEAD_BYTES + 100; // inside stored chunk 1
      bad[at] = (bad[at] as number) ^ 0x10;
      await destination.stored.write(victim, bad);
      try {
        const verify = await cli('auditor', ['--json', 'verify', NAME, '--at', 'vault', '--deep']);
        assert.equal(verify.code, 3, verify.stdout + verify.stderr);
        const damage = jsonOf<VerifyJson>(verify).results[0]?.damage ?? [];
        assert.equal(damage.length, 1);
        assert.equal(damage[0]?.path, victim.slice(NAME.length + 1));
        assert.equal(damage[0]?.chunk, 1);
        const audit = await cli('bare', ['audit', '--sample', '100%']);
        assert.equal(audit.code, 3, audit.stdout + audit.stderr);
        // Without the key, a repair is refused and leaves the copy as it is: never plaintext into it.
        for (const config of ['auditor', 'bare'] as const) {
          const repair = await cli(config, ['audit', '--sample', '100%', '--repair']);
          assert.equal(repair.code, 3, `${config}: ${repair.stdout}${repair.stderr}`);
          assert.match(repair.stdout + repair.stderr, /no key for the destination/);
          assert.deepEqual(await destination.stored.read(victim), bad, `${config}: the copy is untouched`);
          assert.ok((await destination.stored.keys(`${NAME}/.offsite/manifest.json`)).length === 1, `${config}: the manifest stays`);
        }
        // With the key, pull refuses the damaged copy: nothing is restored from it.
        const target = join(dir, 'restore-damaged');
        const pull = await cli('keyed', ['pull', NAME, '--from', 'vault', '--to', target]);
        assert.notEqual(pull.code, 0, pull.stdout + pull.stderr);
        assert.ok(!existsSync(join(target, victim)), 'the damaged file is not restored');
      } finally {
        await destination.stored.write(victim, good);
      }
    });

    it('an auditor with the public key finds a forged manifest (unsigned, or signed content changed)', async () => {
      const key = `${NAME}/.offsite/manifest.json`;
      const good = await destination.stored.read(key);
      const manifest = JSON.parse(good.toString()) as Manifest & { signature?: string; digest?: string };
      const forge = async (change: (m: Manifest) => Manifest): Promise<Buffer> => {
        const { digest: _d, ...body } = change(manifest);
        return Buffer.from(JSON.stringify({ ...body, digest: await manifestDigest(body) }, null, 1));
      };
      try {
        for (const [what, forged] of [
          ['unsigned', await forge(({ signature: _s, ...m }) => ({ ...m, createdAt: new Date(0).toISOString() }))],
          ['changed', await forge((m) => ({ ...m, createdAt: new Date(0).toISOString() }))],
          ['records of other bytes', await forge((m) => ({ ...m, files: m.files.map((f, i) => (i === 0 ? { ...f, chunks: f.chunks.map(() => 'xxh64:0000000000000000') } : f)) }))],
        ] as const) {
          await destination.stored.write(key, forged);
          const verify = await cli('auditor', ['--json', 'verify', NAME, '--at', 'vault']);
          assert.equal(verify.code, 3, `${what}: ${verify.stdout}${verify.stderr}`);
          assert.match(jsonOf<VerifyJson>(verify).results[0]?.damage[0]?.message ?? '', /forged or replaced/, what);
        }
      } finally {
        await destination.stored.write(key, good);
      }
      const verify = await cli('auditor', ['verify', NAME, '--at', 'vault']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    });

    it('replicate without the key (public key only, or no encryption config) refuses to write plaintext there', async () => {
      const before = await destination.stored.read(`${NAME}/.offsite/manifest.json`);
      for (const config of ['auditor', 'bare'] as const) {
        const run = await cli(config, ['replicate', NAME, '--to', 'vault']);
        assert.notEqual(run.code, 0, `${config}: ${run.stdout}${run.stderr}`);
        assert.match(run.stdout + run.stderr, /is encrypted, and no encryption key is configured for it here/);
      }
      assert.deepEqual(await destination.stored.read(`${NAME}/.offsite/manifest.json`), before);
      // A new backup from an audit host: refused at the first file.
      const other = 'backup_2025_10_03_03_00_00';
      await generateBackup({ root: source, name: other, totalBytes: 64 * 1024, seed: 15 });
      const run = await cli('auditor', ['replicate', other, '--to', 'vault']);
      assert.notEqual(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout + run.stderr, /configured with encryption.publicKey only/);
      assert.equal((await destination.stored.keys(`${other}/`)).filter((k) => !k.includes('/.offsite/')).length, 0, 'no file of the new backup was stored');
    });

    it('pull with a wrong key is a configuration error naming the destination, and writes nothing', async () => {
      const target = join(dir, 'restore-wrong');
      const pull = await cli('wrong', ['pull', NAME, '--from', 'vault', '--to', target]);
      assert.equal(pull.code, 2, pull.stdout + pull.stderr);
      assert.match(pull.stderr, /destination "vault": the encryption key configured for it does not open its copy/);
      assert.ok(!existsSync(join(target, NAME)) || treeDigest(join(target, NAME), ['.offsite/']).size === 0, 'nothing under the backup\'s names');
      const bare = await cli('bare', ['pull', NAME, '--from', 'vault', '--to', join(dir, 'restore-bare')]);
      assert.equal(bare.code, 2, bare.stdout + bare.stderr);
      assert.match(bare.stderr, /is encrypted: give this destination its key/);
    });

    it('pull with the key restores the backup byte for byte', async () => {
      const target = join(dir, 'restore');
      const pull = await cli('keyed', ['--json', 'pull', NAME, '--from', 'vault', '--to', target]);
      assert.equal(pull.code, 0, pull.stdout + pull.stderr);
      assert.deepEqual(treeDigest(join(target, NAME)), original);
    });

    it('the key never shows in any output', () => {
      assert.ok(outputs.length > 10);
      for (const run of outputs) {
        for (const secret of [keyHex, wrongHex, Buffer.from(keyHex, 'hex').toString('base64')]) {
          assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), 'a key in the output');
        }
      }
    });
  });
}
