/**
 * Options and authentication of the sftp driver: config parsing, wrong client key, encrypted
 * keys, password refusal without leaking the secret, the SFTP-only account, permission denied.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, chmod, mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createDriver } from '../../src/drivers/index.js';
import { createSftpDriver, parseSftpOptions } from '../../src/drivers/sftp/index.js';
import { ConfigError } from '../../src/errors.js';
import { putObject, readKey, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, generateKey, removeFreshRoots, removeScratch, runProgram, scratchDir, sectionFor, type SftpTestServer } from './server.js';

const FINGERPRINT = `SHA256:${'x'.repeat(43)}`;
const base = { type: 'sftp', host: 'nas.lan', username: 'backup', privateKey: '~/.ssh/id_ed25519', hostKey: FINGERPRINT, root: '/volume1/milvus/' };

describe('sftp options', () => {
  it('fills defaults, expands ~ and trims the root', () => {
    const options = parseSftpOptions('nas', base);
    assert.equal(options.port, 22);
    assert.equal(options.privateKey, join(homedir(), '.ssh/id_ed25519'));
    assert.equal(options.root, '/volume1/milvus');
    assert.deepEqual(options.hostKeys, [FINGERPRINT]);
    assert.equal(options.readyTimeoutMs, 20_000);
    assert.equal(options.insecureAcceptAnyHostKey, false);
    assert.equal(parseSftpOptions('nas', { ...base, root: '/' }).root, '/');
    assert.equal(parseSftpOptions('nas', { ...base, hostKey: `${FINGERPRINT}=` }).hostKeys[0], FINGERPRINT, 'padding is accepted');
  });

  it('agent: true takes SSH_AUTH_SOCK, and fails clearly without it', () => {
    const section = { ...base, privateKey: undefined, agent: true };
    assert.equal(parseSftpOptions('nas', section, undefined, { SSH_AUTH_SOCK: '/tmp/agent.sock' }).agent, '/tmp/agent.sock');
    assert.throws(() => parseSftpOptions('nas', section, undefined, {}), /SSH_AUTH_SOCK is not set/);
  });

  it('refuses bad sections with one-line ConfigErrors that never repeat a secret', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...base, host: undefined }, /^nas: "host" must be a non-empty string, got nothing$/],
      [{ ...base, hots: 'x' }, /^nas: unknown key "hots"/],
      [{ ...base, port: 70000 }, /^nas: "port" must be an integer from 1 to 65535/],
      [{ ...base, privateKey: undefined }, /^nas: no SSH credentials/],
      [{ ...base, root: '/a/../b' }, /^nas: "root" must not contain "\.\."/],
      [{ ...base, concurrencyPerFile: 0 }, /^nas: "concurrencyPerFile"/],
      [{ ...base, insecureAcceptAnyHostKey: 'yes' }, /^nas: "insecureAcceptAnyHostKey" must be true or false/],
      [{ ...base, privateKey: undefined, passphrase: 'hunter2-secret' }, /^nas: "passphrase" is set but "privateKey" is not$/],
      [{ ...base, password: 12345678 }, /^nas: "password" must be a non-empty string, got number$/],
    ];
    for (const [section, message] of cases) {
      for (const key of Object.keys(section)) if (section[key] === undefined) delete section[key];
      assert.throws(
        () => parseSftpOptions('nas', section),
        (err: unknown) => err instanceof ConfigError && message.test(err.message) && !err.message.includes('\n') && !/hunter2|12345678/.test(err.message),
        JSON.stringify(section),
      );
    }
  });

  it('is registered as type sftp', async () => {
    const driver = await createDriver('nas', base);
    assert.match(driver.description, /^sftp:\/\/backup@nas\.lan\/volume1\/milvus$/);
    assert.equal(driver.capabilities.parallelPartWrites, true);
    await driver.close();
    const serial = await createDriver('nas', { ...base, concurrencyPerFile: 1 });
    assert.equal(serial.capabilities.parallelPartWrites, false, 'concurrencyPerFile 1 turns parallel part writes off');
  });
});

describeWithServer('sftp authentication', (server: SftpTestServer) => {
  after(async () => {
    await removeFreshRoots();
    await removeScratch();
  });

  it('a client key the server does not know is refused: kind auth, one clean line', async () => {
    const key = await generateKey(await scratchDir(), 'stranger');
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'auth'), { privateKey: key }));
    try {
      const err = await rejectsWithKind(() => driver.stat('x'), 'auth', 'unknown client key', 'E_AUTH');
      assert.match(err.message, /^nas: connect to 127\.0\.0\.1:\d+: authentication refused/);
      assert.ok(!err.message.includes('\n') && !/\bat .*\.js:\d+/.test(err.message), err.message);
    } finally {
      await driver.close();
    }
  });

  it('an encrypted key works with its passphrase; a wrong passphrase is kind auth without the secret', async () => {
    const key = server.encryptedPrivateKey;
    const root = await freshRoot(server, 'auth');
    const good = await createSftpDriver('nas', sectionFor(server, root, { privateKey: key, passphrase: server.encryptedKeyPassphrase }));
    try {
      await putObject(good, 'hello', Buffer.from('hi'));
      assert.equal((await readKey(good, 'hello')).toString(), 'hi');
    } finally {
      await good.close();
    }
    const wrongSecret = 'wrong-passphrase-value';
    const bad = await createSftpDriver('nas', sectionFor(server, root, { privateKey: key, passphrase: wrongSecret }));
    try {
      const err = await rejectsWithKind(() => bad.stat('hello'), 'auth', 'wrong passphrase');
      assert.ok(!err.message.includes(wrongSecret), err.message);
      assert.ok(!err.message.includes('\n'), err.message);
    } finally {
      await bad.close();
    }
    const none = await createSftpDriver('nas', sectionFor(server, root, { privateKey: key }));
    try {
      await rejectsWithKind(() => none.stat('hello'), 'auth', 'encrypted key without passphrase');
    } finally {
      await none.close();
    }
  });

  it('ssh-agent: agent: true (SSH_AUTH_SOCK) and an explicit socket path both authenticate', async () => {
    const socket = join(await scratchDir(), 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100; i++) {
        if (await access(socket).then(() => true, () => false)) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const previous = process.env['SSH_AUTH_SOCK'];
      process.env['SSH_AUTH_SOCK'] = socket;
      try {
        await runProgram('ssh-add', ['-q', server.privateKey]);
        for (const agentOption of [true, socket]) {
          const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'agent'), { privateKey: undefined, agent: agentOption }));
          try {
            await putObject(driver, 'via-agent', Buffer.from('agent'));
            assert.equal((await readKey(driver, 'via-agent')).toString(), 'agent');
          } finally {
            await driver.close();
          }
        }
      } finally {
        if (previous === undefined) delete process.env['SSH_AUTH_SOCK'];
        else process.env['SSH_AUTH_SOCK'] = previous;
      }
    } finally {
      agent.kill();
    }
  });

  it('password authentication refused by the server: kind auth, the password never shows', async () => {
    const password = 'pa55-w0rd-never-print';
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'auth'), { privateKey: undefined, password }));
    try {
      const err = await rejectsWithKind(() => driver.stat('x'), 'auth', 'password refused', 'E_AUTH');
      assert.ok(!err.message.includes(password), err.message);
    } finally {
      await driver.close();
    }
  });

  it('a missing private key file is a ConfigError naming the file', async () => {
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'auth'), { privateKey: '/nonexistent/id_ed25519' }));
    try {
      await assert.rejects(() => driver.stat('x'), (err: unknown) => err instanceof ConfigError && err.message.includes('/nonexistent/id_ed25519'));
    } finally {
      await driver.close();
    }
  });

  it('the SFTP-only account (no shell, ForceCommand internal-sftp) works, and permission denied is permanent', async (t) => {
    if (!server.sftpOnlyUsername || !server.sftpOnlyRoot) {
      t.skip('the test sshd has no SFTP-only account (not running as root)');
      return;
    }
    const own = await createSftpDriver('nas', sectionFor(server, join(server.sftpOnlyRoot, 'data'), { username: server.sftpOnlyUsername }));
    const data = seededBytes(300_000, 5);
    try {
      await putObject(own, 'a/b.bin', data, 64 * 1024);
      assert.ok((await readKey(own, 'a/b.bin')).equals(data));
      await own.delete('a/b.bin');
    } finally {
      await own.close();
    }
    // A root-owned folder the account may not write to.
    const locked = await freshRoot(server, 'locked');
    await mkdir(locked, { recursive: true });
    await chmod(locked, 0o755);
    const denied = await createSftpDriver('nas', sectionFor(server, locked, { username: server.sftpOnlyUsername }));
    try {
      const err = await rejectsWithKind(() => putObject(denied, 'x/y.bin', Buffer.from('data')), 'permanent', 'write into a folder owned by root', 'E_PERMISSION_DENIED');
      assert.match(err.message, /^nas: x\/y\.bin: /);
    } finally {
      await denied.close();
    }
  });
});
