/**
 * The one config reader (src/config/schema.ts) and the schemas the drivers declare: every type
 * read alike in every section (numbers and booleans from `${ENV}` strings), unknown keys and
 * wrong types as one line naming the file, the section, the key and what is expected, secrets
 * never echoed, paths relative to the config file because the schema says they are paths.
 */
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { it, describe } from 'node:test';
import { parseConfig, reusePolicyOf } from '../../src/config/config.js';
import { driverSectionOf } from '../../src/runtime/overlap.js';
import {
  boolean, custom, duration, integer, oneOf, path, readSection, refuse, secret, size, string, type Schema, type SectionContext,
} from '../../src/config/schema.js';
import { createDriver } from '../../src/drivers/index.js';
import { parseSftpOptions } from '../../src/drivers/sftp/index.js';
import { ConfigError } from '../../src/errors.js';

const SCHEMA = {
  count: integer({ default: 8, min: 1, max: 256 }),
  flag: boolean({ default: false }),
  name: string({ required: true }),
  password: secret(),
  mode: oneOf(['auto', 'copy'] as const, { default: 'auto' }),
  file: path(),
  chunk: size(),
  wait: duration(),
  pin: custom({ expected: 'a pin' }, (v) => (v === 'ok' ? 'ok' : refuse())),
} satisfies Schema;

const CONTEXT: SectionContext = { file: '/etc/offsite/offsite.yaml', section: 'destinations.nas', type: 'demo', baseDir: '/etc/offsite' };

function refuses(action: () => unknown, message: RegExp, secretValue?: string): void {
  assert.throws(action, (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, message);
    assert.ok(!err.message.includes('\n'), 'one line');
    if (secretValue !== undefined) assert.ok(!err.message.includes(secretValue), `secret echoed: ${err.message}`);
    return true;
  });
}

describe('readSection: each type', () => {
  const read = (section: Record<string, unknown>) => readSection(SCHEMA, { name: 'n', ...section }, CONTEXT);

  it('defaults, and absent optional keys stay undefined', () => {
    const v = read({});
    assert.deepEqual([v.count, v.flag, v.mode, v.password, v.file, v.chunk, v.wait, v.pin], [8, false, 'auto', undefined, undefined, undefined, undefined, undefined]);
  });

  const accepted: Array<[string, unknown, unknown]> = [
    ['count', 4, 4],
    ['count', '4', 4],
    ['count', ' 12 ', 12],
    ['flag', true, true],
    ['flag', 'true', true],
    ['flag', 'FALSE', false],
    ['name', '  host  ', 'host'],
    ['password', ' keep spaces ', ' keep spaces '],
    ['mode', 'copy', 'copy'],
    ['file', 'keys/id', '/etc/offsite/keys/id'],
    ['file', '~/id', `${homedir()}/id`],
    ['file', '/abs/id', '/abs/id'],
    ['chunk', '8MiB', 8 * 1024 * 1024],
    ['chunk', 4096, 4096],
    ['wait', '10m', 600_000],
    ['wait', '2', 2000],
    ['pin', 'ok', 'ok'],
  ];
  for (const [key, value, expected] of accepted) {
    it(`${key}: ${JSON.stringify(value)} reads as ${JSON.stringify(expected)}`, () => {
      assert.deepEqual((read({ [key]: value }) as Record<string, unknown>)[key], expected);
    });
  }

  const refused: Array<[string, unknown, RegExp]> = [
    ['count', 0, /"count" must be an integer from 1 to 256, got number 0$/],
    ['count', '4.5', /"count" must be an integer from 1 to 256, got "4\.5"$/],
    ['count', 'four', /"count" must be an integer from 1 to 256, got "four"$/],
    ['count', '300', /"count" must be an integer from 1 to 256, got "300"$/],
    ['count', true, /"count" must be an integer from 1 to 256, got boolean true$/],
    ['flag', 'yes', /"flag" must be true or false, got "yes"$/],
    ['flag', 1, /"flag" must be true or false, got number 1$/],
    ['name', '', /"name" must be a non-empty string, got ""$/],
    ['name', ['a'], /"name" must be a non-empty string, got object \["a"\]$/],
    ['mode', 'fast', /"mode" must be one of auto, copy, got "fast"$/],
    ['file', 'a\0b', /"file" must be a non-empty path, it contains a NUL byte$/],
    ['file', 42, /"file" must be a non-empty path, got number 42$/],
    ['chunk', '8 lightyears', /"chunk" must be a size like 8MiB/],
    ['wait', 'soon', /"wait" must be a duration like 60s/],
    ['pin', 'nope', /"pin" must be a pin, got "nope"$/],
  ];
  for (const [key, value, message] of refused) {
    it(`${key}: ${JSON.stringify(value)} is refused naming the file, section and key`, () => {
      refuses(() => read({ [key]: value }), new RegExp(`^/etc/offsite/offsite\\.yaml: destinations\\.nas: ${message.source}`));
    });
  }

  it('a required key that is missing is named', () => {
    refuses(() => readSection(SCHEMA, {}, CONTEXT), /^\/etc\/offsite\/offsite\.yaml: destinations\.nas: "name" must be a non-empty string, got nothing$/);
  });

  it('an unknown key is refused, with the close one suggested and the known ones listed', () => {
    refuses(() => read({ cuont: 3 }), /^\/etc\/offsite\/offsite\.yaml: destinations\.nas: unknown key "cuont" for type demo \(did you mean "count"\?\) \(known: count, flag, name/);
    refuses(() => read({ Password: 'x' }), /did you mean "password"/);
    refuses(() => read({ zzzzzzzz: 1 }), /unknown key "zzzzzzzz" for type demo \(known: /);
  });

  it('a secret key never shows its value, whatever is wrong with it', () => {
    refuses(() => read({ password: '' }), /"password" must be a non-empty string, got an empty string$/);
    refuses(() => read({ password: 12345678 }), /"password" must be a non-empty string, got number$/, '12345678');
    refuses(() => read({ password: ['hunter2-secret'] }), /"password" must be a non-empty string, got object$/, 'hunter2');
  });
});

describe('the config file: every driver section read by its schema', () => {
  const FILE = '/srv/conf/offsite.yaml';
  const config = (destination: string, extra = '') => `source: { type: local, root: ./backups }\ndestinations:\n  d: ${destination}\n${extra}`;

  it('numbers and booleans from ${ENV} are read alike in every driver section', () => {
    const env = { N: '4', T: 'true', P: '2222' };
    const sections = [
      '{ type: local, root: /x, maxConcurrency: "${N}" }',
      '{ type: s3, bucket: b, maxConcurrency: "${N}", forcePathStyle: "${T}" }',
      '{ type: minio, bucketName: b, port: "${P}", useSSL: "${T}", maxConcurrency: "${N}" }',
      '{ type: sftp, host: h, port: "${P}", username: u, password: pw, root: /r, insecureAcceptAnyHostKey: "${T}", maxConcurrency: "${N}" }',
    ];
    for (const section of sections) {
      const d = parseConfig(config(section), FILE, env).destinations['d'] as Record<string, unknown>;
      assert.equal(d['maxConcurrency'], 4, section);
      if ('port' in d) assert.equal(d['port'], 2222, section);
    }
    const sftp = parseSftpOptions('d', parseConfig(config(sections[3] as string), FILE, env).destinations['d'] as Record<string, unknown>);
    assert.deepEqual([sftp.port, sftp.maxConcurrency, sftp.insecureAcceptAnyHostKey], [2222, 4, true]);
  });

  it('the same mistake reads the same in every section: file, section, key, what is expected', () => {
    for (const section of ['{ type: local, root: /x, maxConcurrency: lots }', '{ type: s3, bucket: b, maxConcurrency: lots }', '{ type: minio, bucketName: b, maxConcurrency: lots }',
      '{ type: sftp, host: h, username: u, password: pw, root: /r, insecureAcceptAnyHostKey: true, maxConcurrency: lots }']) {
      refuses(() => parseConfig(config(section), FILE, {}), /^\/srv\/conf\/offsite\.yaml: destinations\.d: "maxConcurrency" must be an integer from 1 to 256, got "lots"$/);
    }
    refuses(() => parseConfig(config('{ type: local, root: /x, rooot: /y }'), FILE, {}), /^\/srv\/conf\/offsite\.yaml: destinations\.d: unknown key "rooot" for type local \(did you mean "root"\?\)/);
    refuses(() => parseConfig(config('{ type: ftp, root: /x }'), FILE, {}), /^\/srv\/conf\/offsite\.yaml: destinations\.d: unknown type "ftp" \(one of: local, minio, s3, sftp\)$/);
    refuses(() => parseConfig(config('{ root: /x }'), FILE, {}), /^\/srv\/conf\/offsite\.yaml: destinations\.d: missing "type"/);
    refuses(() => parseConfig(config('{ type: local, root: /x }', 'options: { concurrency: "0" }\n'), FILE, {}), /^\/srv\/conf\/offsite\.yaml: options: "concurrency" must be an integer from 1 to 1024, got "0"$/);
    refuses(() => parseConfig('source: { type: local, root: /b, maxConcurrency: x }\ndestinations: { d: { type: local, root: /d } }\n', FILE, {}), /^\/srv\/conf\/offsite\.yaml: source: "maxConcurrency"/);
  });

  it('options take strings from ${ENV} too', () => {
    const parsed = parseConfig(config('{ type: local, root: /x }', 'options: { concurrency: "${C}", retries: "0", bwlimit: "${B}" }\n'), FILE, { C: '3', B: '1MiB' });
    assert.deepEqual([parsed.settings.concurrency, parsed.settings.retries, parsed.settings.bwlimitBytesPerSecond], [3, 0, 1024 * 1024]);
  });

  it('a secret given the wrong type is refused without its value, in every driver', () => {
    const cases = [
      '{ type: s3, bucket: b, accessKeyId: ak, secretAccessKey: [TOPSECRET1] }',
      '{ type: minio, bucketName: b, accessKeyID: ak, secretAccessKey: { v: TOPSECRET1 } }',
      '{ type: sftp, host: h, username: u, password: [TOPSECRET1], root: /r, insecureAcceptAnyHostKey: true }',
      '{ type: sftp, host: h, username: u, privateKey: k, passphrase: [TOPSECRET1], root: /r, insecureAcceptAnyHostKey: true }',
    ];
    for (const section of cases) refuses(() => parseConfig(config(section), FILE, {}), /must be a non-empty string, got object$/, 'TOPSECRET1');
  });

  it('path keys come from the schemas: relative to the config file, in any driver', () => {
    const parsed = parseConfig([
      'source: { type: minio, milvusBackupConfig: mb/backup.yaml, bucketName: b }',
      'destinations:',
      '  disk: { type: local, root: ./copies }',
      '  nas: { type: sftp, host: h, username: u, privateKey: keys/id, knownHosts: ./kh, agent: run/agent.sock, root: rel/remote }',
      '  cloud: { type: s3, bucket: b, prefix: rel/prefix }',
    ].join('\n'), FILE, {});
    assert.equal(parsed.source['milvusBackupConfig'], '/srv/conf/mb/backup.yaml');
    assert.equal(parsed.destinations['disk']?.['root'], '/srv/conf/copies');
    const nas = parsed.destinations['nas'] as Record<string, unknown>;
    assert.deepEqual([nas['privateKey'], nas['knownHosts'], nas['agent']], ['/srv/conf/keys/id', '/srv/conf/kh', '/srv/conf/run/agent.sock']);
    assert.equal(nas['root'], 'rel/remote', 'a path on the server is not a path on this machine');
    assert.equal(parsed.destinations['cloud']?.['prefix'], 'rel/prefix', 'a prefix in a bucket is not a path on this machine');
  });

  it('sftp: a host with a port is refused, pointing to the port key', () => {
    refuses(() => parseConfig(config('{ type: sftp, host: "h:22", username: u, password: pw, root: /r, insecureAcceptAnyHostKey: true }'), FILE, {}),
      /^\/srv\/conf\/offsite\.yaml: destinations\.d: "host" must be a non-empty string, got "h:22": a host name without the port, which has its own key \("host: h" and "port: 22"\)$/);
    refuses(() => parseSftpOptions('nas', { type: 'sftp', host: 'sftp://nas.lan', username: 'u', password: 'p', root: '/r', insecureAcceptAnyHostKey: true }), /without a scheme/);
    refuses(() => parseSftpOptions('nas', { type: 'sftp', host: 'backup@nas.lan', username: 'u', password: 'p', root: '/r', insecureAcceptAnyHostKey: true }), /"username"/);
    for (const host of ['::1', '[::1]', 'fe80::1', '10.0.0.5', 'nas.lan']) {
      const o = parseSftpOptions('nas', { type: 'sftp', host, username: 'u', password: 'p', root: '/r', insecureAcceptAnyHostKey: true });
      assert.equal(o.host, host.replace(/^\[|\]$/g, ''), host);
    }
  });

  it('bwlimit stays a key of any destination section (the engine\'s), read as a size', async () => {
    const parsed = parseConfig(config('{ type: local, root: /x, bwlimit: "${R}" }'), FILE, { R: '2MiB' });
    assert.equal(parsed.destinations['d']?.['bwlimit'], 2 * 1024 * 1024);
    refuses(() => parseConfig(config('{ type: local, root: /x, bwlimit: fast }'), FILE, {}), /destinations\.d: "bwlimit" must be a size/);
  });

  it('reuse is a key of every destination type (copy, link, off; default copy), kept out of the driver section', async () => {
    for (const type of ['{ type: local, root: /x', '{ type: s3, bucket: bkt, endpoint: "http://127.0.0.1:1", accessKeyId: a, secretAccessKey: s',
      '{ type: sftp, host: h, username: u, password: p, insecureAcceptAnyHostKey: true, root: /r', '{ type: minio, address: h, bucketName: b, accessKeyID: a, secretAccessKey: s']) {
      for (const policy of ['copy', 'link', 'off'] as const) {
        const parsed = parseConfig(config(`${type}, reuse: ${policy} }`), FILE, {});
        assert.equal(reusePolicyOf(parsed.destinations['d'] ?? {}), policy, `${type}: reuse ${policy}`);
      }
      assert.equal(reusePolicyOf(parseConfig(config(`${type} }`), FILE, {}).destinations['d'] ?? {}), 'copy', `${type}: default`);
      refuses(() => parseConfig(config(`${type}, reuse: hardlink }`), FILE, {}), /destinations\.d: "reuse" must be one of copy, link, off/);
    }
    const parsed = parseConfig(config('{ type: local, root: /x, reuse: link }'), FILE, {});
    const driver = await createDriver('d', driverSectionOf(parsed.destinations['d'] ?? {})); // a driver refuses keys it does not know
    await driver.close();
    assert.equal(driverSectionOf(parsed.destinations['d'] ?? {})['reuse'], undefined);
  });

  it('a section read at load builds its driver unchanged (the second read is a no-op)', async () => {
    const parsed = parseConfig(config('{ type: s3, bucket: bkt, endpoint: "http://127.0.0.1:1", maxConcurrency: "3", accessKeyId: a, secretAccessKey: s }'), FILE, {});
    const driver = await createDriver('d', parsed.destinations['d'] as Record<string, unknown>);
    assert.equal(driver.capabilities.maxConcurrency, 3);
    await driver.close();
  });
});
