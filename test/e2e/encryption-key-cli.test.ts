/**
 * `offsite key` (issue 14): prints the public key an audit host puts in its config
 * (`encryption: { publicKey }`), for every encrypted destination or the ones named, from
 * `encryption.key`, `encryption.keyFile` or a configured `publicKey`; never the secret key. A
 * destination that is not encrypted, a config with none, an unknown name and a key file that
 * cannot be read are usage/config errors (exit 2) that say what is wrong. The printed key is the
 * one the manifests are signed with: ./encryption-suite.ts takes its auditor's key from this
 * command on every kind of destination.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { DestinationKey } from '../../src/crypto/keys.js';
import { jsonOf, runCli, tempDir } from '../helpers/cli.js';

interface KeyJson { ok: boolean; keys: { destination: string; publicKey: string; from: string }[] }
interface ErrorJson { ok: boolean; error: { code: string; message: string } }

describe('offsite key (CLI)', () => {
  const keyHex = randomBytes(32).toString('hex');
  const fileKey = randomBytes(32);
  const auditorKey = new DestinationKey('x', randomBytes(32)).publicKey;
  const env = { OFFSITE_KEY: keyHex };
  const secrets = [keyHex, Buffer.from(keyHex, 'hex').toString('base64'), fileKey.toString('hex'), fileKey.toString('base64')];
  let dir: string;
  let config: string;

  const write = (name: string, destinations: Record<string, unknown>): string => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, stringify({ source: { type: 'local', root: join(dir, 'backups') }, destinations, options: { quietPeriod: '0s' } }));
    return path;
  };
  const noSecrets = (text: string): void => {
    for (const secret of secrets) assert.ok(!text.includes(secret), 'a secret key in the output');
  };

  before(() => {
    dir = tempDir('enc-key');
    writeFileSync(join(dir, 'cloud.key'), fileKey);
    config = write('all', {
      plain: { type: 'local', root: join(dir, 'plain') },
      cloud: { type: 'local', root: join(dir, 'cloud'), encryption: { key: '${OFFSITE_KEY}' } },
      nas: { type: 'local', root: join(dir, 'nas'), encryption: { keyFile: join(dir, 'cloud.key') } },
      audited: { type: 'local', root: join(dir, 'audited'), encryption: { publicKey: auditorKey } },
    });
  });

  it('prints the public key of every encrypted destination, derived from key or keyFile, or as configured', async () => {
    const run = await runCli(['--config', config, '--json', 'key'], { env });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual(jsonOf<KeyJson>(run), {
      ok: true,
      keys: [
        { destination: 'cloud', publicKey: new DestinationKey('cloud', Buffer.from(keyHex, 'hex')).publicKey, from: 'key' },
        { destination: 'nas', publicKey: new DestinationKey('nas', fileKey).publicKey, from: 'keyFile' },
        { destination: 'audited', publicKey: auditorKey, from: 'publicKey' },
      ],
    });
    const text = await runCli(['--config', config, 'key', '--at', 'nas'], { env });
    assert.equal(text.code, 0, text.stdout + text.stderr);
    const publicKey = new DestinationKey('nas', fileKey).publicKey;
    assert.match(text.stdout, new RegExp(`^nas  ${publicKey.replace(/[+/]/g, '\\$&')}  \\(derived from encryption.keyFile\\)$`, 'm'));
    assert.ok(text.stdout.includes(`encryption: { publicKey: "${publicKey}" }`), 'shows the config line for an audit host');
    assert.doesNotMatch(text.stdout, /cloud|audited/);
    noSecrets(run.stdout + run.stderr + text.stdout + text.stderr);
  });

  it('says so when a destination is not encrypted, none is, the name is unknown, or the key file cannot be read (exit 2)', async () => {
    const cases: [string, string[], RegExp][] = [
      ['not encrypted', ['--config', config, 'key', '--at', 'cloud,plain'], /destination "plain" is not encrypted \(its config has no "encryption" section\)/],
      ['unknown', ['--config', config, 'key', '--at', 'vault'], /unknown destination "vault" \(configured in .*: plain, cloud, nas, audited\)/],
      ['none encrypted', ['--config', write('plain', { plain: { type: 'local', root: join(dir, 'plain') } }), 'key'], /no destination in .* is encrypted/],
      ['key file missing', ['--config', write('missing', { nas: { type: 'local', root: join(dir, 'nas'), encryption: { keyFile: join(dir, 'gone.key') } } }), 'key'],
        /destination "nas": encryption.keyFile: cannot read ".*gone.key" \(ENOENT\): check the path and its permissions/],
    ];
    for (const [what, args, expected] of cases) {
      const run = await runCli(args, { env });
      assert.equal(run.code, 2, `${what}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, expected, what);
      assert.equal(run.stdout, '', `${what}: nothing on stdout`);
      const json = await runCli([...args.slice(0, 2), '--json', ...args.slice(2)], { env });
      assert.equal(json.code, 2, what);
      assert.equal(jsonOf<ErrorJson>(json).ok, false, what);
      assert.match(jsonOf<ErrorJson>(json).error.message, expected, what);
      noSecrets(run.stdout + run.stderr + json.stdout + json.stderr);
    }
  });

  it('--help says what the key is for and how an audit host uses it', async () => {
    const run = await runCli(['key', '--help']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /Usage: offsite key \[options\]/);
    assert.match(run.stdout, /--at <names>/);
    assert.match(run.stdout, /encryption: \{ publicKey: "BASE64" \}/);
    assert.match(run.stdout, /secret key is never printed/);
    const top = await runCli(['--help']);
    assert.match(top.stdout, /^\s+key \[options\]\s+print the public key/m);
  });
});
