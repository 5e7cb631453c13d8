/**
 * Host key checking: fingerprints and known_hosts parsing (against what OpenSSH's own tools
 * produce), and real connects to the test sshd that are accepted or refused.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createSftpDriver, parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { fingerprintOf, hostFieldMatches, judgeHostKey, knownHostsName, parseKnownHosts, preferredHostKeyAlgorithms } from '../../src/drivers/sftp/hostkeys.js';
import { ConfigError, OffsiteError } from '../../src/errors.js';
import { rejectsWithKind } from '../conformance/suite.js';
import { describeWithServer, freshRoot, generateKey, removeFreshRoots, removeScratch, runProgram, scratchDir, sectionFor, type SftpTestServer } from './server.js';

function keyBlob(publicLine: string): Buffer {
  return Buffer.from(publicLine.trim().split(/\s+/)[1] as string, 'base64');
}

describe('sftp host keys: pure functions', () => {
  after(removeScratch);

  it('fingerprintOf prints exactly what ssh-keygen -lf prints', async () => {
    const dir = await scratchDir();
    for (const type of ['ed25519', 'rsa', 'ecdsa']) {
      const path = join(dir, `k_${type}`);
      await runProgram('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', path]);
      const printed = /SHA256:\S+/.exec(await runProgram('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${path}.pub`]))?.[0];
      assert.equal(fingerprintOf(keyBlob(await readFile(`${path}.pub`, 'utf8'))), printed, type);
    }
  });

  it('matches plain, [host]:port, wildcard, negated and hashed (ssh-keygen -H) entries', async () => {
    assert.equal(knownHostsName('NAS.lan', 22), 'nas.lan');
    assert.equal(knownHostsName('nas.lan', 2222), '[nas.lan]:2222');
    assert.ok(hostFieldMatches('nas.lan,10.0.0.5', 'nas.lan'));
    assert.ok(!hostFieldMatches('nas.lan', '[nas.lan]:2222'), 'a port-22 entry does not cover another port');
    assert.ok(hostFieldMatches('[nas.lan]:2222', '[nas.lan]:2222'));
    assert.ok(hostFieldMatches('*.lan', 'nas.lan'));
    assert.ok(hostFieldMatches('[*.lan]:2222', '[nas.lan]:2222'));
    assert.ok(hostFieldMatches('nas?.lan', 'nas1.lan'));
    assert.ok(!hostFieldMatches('*.lan,!nas.lan', 'nas.lan'), 'negation wins');
    assert.ok(!hostFieldMatches('nas.lan', 'nas.lan.evil.com'));

    const dir = await scratchDir();
    const key = await generateKey(dir, 'host');
    const publicLine = (await readFile(`${key}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    const file = join(dir, 'known_hosts');
    await writeFile(file, `nas.lan ${publicLine}\n[nas.lan]:2222 ${publicLine}\n`);
    await runProgram('ssh-keygen', ['-H', '-f', file]);
    const text = await readFile(file, 'utf8');
    assert.match(text, /^\|1\|/m, 'ssh-keygen -H hashed the file');
    const lines = parseKnownHosts(text);
    assert.equal(lines.length, 2);
    assert.ok(lines.some((line) => hostFieldMatches(line.hosts, 'nas.lan')));
    assert.ok(lines.some((line) => hostFieldMatches(line.hosts, '[nas.lan]:2222')));
    assert.ok(!lines.some((line) => hostFieldMatches(line.hosts, 'other.lan')));
  });

  it('judges keys: trusted, unknown, changed, revoked; prefers the known key type', async () => {
    const dir = await scratchDir();
    const a = keyBlob(await readFile(`${await generateKey(dir, 'a')}.pub`, 'utf8'));
    const b = keyBlob(await readFile(`${await generateKey(dir, 'b')}.pub`, 'utf8'));
    const line = (blob: Buffer, hosts: string, marker = ''): string => `${marker}${hosts} ssh-ed25519 ${blob.toString('base64')}`;
    const known = (text: string) => ({ path: '/k', lines: parseKnownHosts(text) });
    const policy = { host: 'nas.lan', port: 22, hostKeys: [] as string[] };
    assert.deepEqual(judgeHostKey(a, { ...policy, hostKeys: [fingerprintOf(a)] }), { trusted: true });
    assert.deepEqual(judgeHostKey(a, { ...policy, knownHosts: known(line(a, 'nas.lan')) }), { trusted: true });
    assert.equal(judgeHostKey(a, { ...policy, knownHosts: known(line(a, 'other.lan')) }).trusted, false);
    const unknown = judgeHostKey(a, { ...policy, knownHosts: known(`# comment\n\n${line(a, 'other.lan')}\ngarbage line\n`) });
    assert.ok(!unknown.trusted && unknown.reason === 'unknown', JSON.stringify(unknown));
    const changed = judgeHostKey(a, { ...policy, knownHosts: known(line(b, 'nas.lan')) });
    assert.ok(!changed.trusted && changed.reason === 'changed', JSON.stringify(changed));
    const pinnedOther = judgeHostKey(a, { ...policy, hostKeys: [fingerprintOf(b)] });
    assert.ok(!pinnedOther.trusted && pinnedOther.reason === 'changed');
    const revoked = judgeHostKey(a, { ...policy, hostKeys: [fingerprintOf(a)], knownHosts: known(line(a, 'nas.lan', '@revoked ')) });
    assert.ok(!revoked.trusted && revoked.reason === 'revoked', 'a revoked key is refused even when pinned');
    const rsaOnly = { ...policy, knownHosts: { path: '/k', lines: [{ hosts: 'nas.lan', keyType: 'ssh-rsa', keyBlob: Buffer.alloc(0), line: 1 }] } };
    assert.deepEqual(preferredHostKeyAlgorithms(rsaOnly)?.slice(0, 3), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    assert.equal(preferredHostKeyAlgorithms(policy), undefined);
  });

  it('a section without any host key option is refused, naming the three options', () => {
    const section = { type: 'sftp', host: 'nas.lan', username: 'u', privateKey: '/k', root: '/r' };
    assert.throws(
      () => parseSftpOptions('nas', section),
      (err: unknown) =>
        err instanceof ConfigError && /hostKey/.test(err.message) && /knownHosts/.test(err.message) && /insecureAcceptAnyHostKey/.test(err.message) && !err.message.includes('\n'),
    );
    assert.throws(() => parseSftpOptions('nas', { ...section, hostKey: 'md5:aa:bb' }), /must be a SHA256 fingerprint/);
  });
});

describeWithServer('sftp host keys: real connects', (server: SftpTestServer) => {
  after(async () => {
    await removeFreshRoots();
    await removeScratch();
  });

  /**
   * The server has an ed25519 and an RSA key; which one it shows depends on the type that matched
   * last in this process (connection.ts offers it first), so a message may name either.
   */
  function namesAServerKey(message: string): boolean {
    return message.includes(server.hostKeyFingerprint) || message.includes(server.rsaHostKeyFingerprint);
  }

  /** Connects (through a stat) with the given host key options; the driver is closed after. */
  async function connectWith(overrides: Record<string, unknown>): Promise<void> {
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'hostkeys'), { hostKey: undefined, ...overrides }));
    try {
      assert.equal(await driver.stat('nothing-here'), undefined);
    } finally {
      await driver.close();
    }
  }

  it('accepts the pinned fingerprint (as printed by ssh-keygen -lf)', async () => {
    await connectWith({ hostKey: server.hostKeyFingerprint });
  });

  it('accepts known_hosts: plain [host]:port, hashed, and wildcard entries', async () => {
    const dir = await scratchDir();
    await connectWith({ knownHosts: server.knownHostsFile });

    const hashed = join(dir, 'hashed');
    await writeFile(hashed, `# hashed by ssh-keygen -H\nsomeone.else ${server.hostPublicKey}\n[127.0.0.1]:${server.port} ${server.hostPublicKey}\n`);
    await runProgram('ssh-keygen', ['-H', '-f', hashed]);
    assert.doesNotMatch(await readFile(hashed, 'utf8'), /127\.0\.0\.1/, 'the file is hashed');
    await connectWith({ knownHosts: hashed });

    const wildcard = join(dir, 'wildcard');
    await writeFile(wildcard, `[127.0.0.*]:${server.port},!10.1.1.1 ${server.hostPublicKey}\n`);
    await connectWith({ knownHosts: wildcard });
  });

  it('refuses a wrong pinned fingerprint: kind auth, one line with the offered fingerprint and the fix', async () => {
    const wrong = `SHA256:${Buffer.alloc(32, 7).toString('base64').replace(/=+$/, '')}`;
    const err = await rejectsWithKind(() => connectWith({ hostKey: wrong }), 'auth', 'wrong hostKey', 'E_HOST_KEY');
    assert.ok(err.message.includes(server.hostKeyFingerprint), `message shows the offered fingerprint: ${err.message}`);
    assert.match(err.message, /CHANGED/);
    assert.ok(err.message.includes(`hostKey: "${server.hostKeyFingerprint}"`), 'message says what to put in the config');
    assert.match(err.message, /^nas: /);
    assert.ok(!err.message.includes('\n'), 'one line');
  });

  it('a pinned RSA key is found although the server would rather show its ed25519 key (issue 11 finding 14)', async () => {
    assert.notEqual(server.rsaHostKeyFingerprint, server.hostKeyFingerprint);
    // Twice: the second connect offers the type that matched first.
    await connectWith({ hostKey: server.rsaHostKeyFingerprint });
    await connectWith({ hostKey: server.rsaHostKeyFingerprint });
    const dir = await scratchDir();
    const rsaOnly = join(dir, 'rsa-only');
    await writeFile(rsaOnly, `[127.0.0.1]:${server.port} ${server.rsaHostPublicKey}\n`);
    await connectWith({ knownHosts: rsaOnly });
  });

  it('every fingerprint that "ssh-keyscan -p PORT HOST | ssh-keygen -lf -" prints connects (the README\'s advice)', async () => {
    const dir = await scratchDir();
    const scanned = join(dir, 'scanned');
    await writeFile(scanned, await runProgram('ssh-keyscan', ['-p', String(server.port), server.host]));
    const fingerprints = [...(await runProgram('ssh-keygen', ['-l', '-E', 'sha256', '-f', scanned])).matchAll(/SHA256:[A-Za-z0-9+/]+/g)].map((m) => m[0]);
    assert.ok(fingerprints.includes(server.rsaHostKeyFingerprint) && fingerprints.includes(server.hostKeyFingerprint), fingerprints.join(' '));
    for (const fingerprint of fingerprints) await connectWith({ hostKey: fingerprint });
  });

  it('a wrong pin is refused as CHANGED (man-in-the-middle) after every key type of the server was seen', async () => {
    const wrong = `SHA256:${Buffer.alloc(32, 9).toString('base64').replace(/=+$/, '')}`;
    const err = await rejectsWithKind(() => connectWith({ hostKey: wrong }), 'auth', 'wrong hostKey', 'E_HOST_KEY');
    assert.match(err.message, /CHANGED.*man-in-the-middle/);
    assert.ok(err.message.includes(server.hostKeyFingerprint) && err.message.includes(server.rsaHostKeyFingerprint), `both keys the server showed are named: ${err.message}`);
    assert.ok(!err.message.includes('\n'), 'one line');
  });

  it('refuses a host that known_hosts does not list (only the port-22 form is there), and a changed key', async () => {
    const dir = await scratchDir();
    const portless = join(dir, 'portless');
    await writeFile(portless, `127.0.0.1 ${server.hostPublicKey}\n`);
    const unknown = await rejectsWithKind(() => connectWith({ knownHosts: portless }), 'auth', 'unknown host', 'E_HOST_KEY');
    assert.ok(namesAServerKey(unknown.message), unknown.message);
    assert.match(unknown.message, /unknown/);
    assert.ok(unknown.message.includes(`[127.0.0.1]:${server.port} is not in ${portless}`), unknown.message);

    const other = await generateKey(dir, 'impostor');
    const otherLine = (await readFile(`${other}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    const changedFile = join(dir, 'changed');
    await writeFile(changedFile, `[127.0.0.1]:${server.port} ${otherLine}\n`);
    const changed = await rejectsWithKind(() => connectWith({ knownHosts: changedFile }), 'auth', 'changed key', 'E_HOST_KEY');
    assert.match(changed.message, /CHANGED/);
    assert.ok(namesAServerKey(changed.message), changed.message);
  });

  it('a missing known_hosts file is a ConfigError naming it', async () => {
    await assert.rejects(() => connectWith({ knownHosts: '/nonexistent/known_hosts' }), (err: unknown) => err instanceof ConfigError && err.message.includes('/nonexistent/known_hosts'));
  });

  it('insecureAcceptAnyHostKey connects and warns on every connect, with the offered fingerprint', async () => {
    const warnings: string[] = [];
    for (let i = 0; i < 2; i++) {
      const options = parseSftpOptions('nas', sectionFor(server, await freshRoot(server, 'insecure'), { hostKey: undefined, insecureAcceptAnyHostKey: true }));
      const driver = new SftpDriver('nas', options, { warn: (line) => warnings.push(line) });
      try {
        assert.equal(await driver.stat('x'), undefined);
      } finally {
        await driver.close();
      }
    }
    assert.equal(warnings.length, 2, JSON.stringify(warnings));
    for (const line of warnings) {
      assert.match(line, /WARNING/);
      assert.ok(namesAServerKey(line), line);
    }
  });

  it('insecureAcceptAnyHostKey warns on stderr by default', async () => {
    const written: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      written.push(String(chunk));
      return (original as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stderr.write;
    try {
      await connectWith({ insecureAcceptAnyHostKey: true });
    } finally {
      process.stderr.write = original;
    }
    assert.ok(written.some((line) => /WARNING: nas: accepting the SSH host key/.test(line)), JSON.stringify(written));
  });

  it('errors are OffsiteErrors even when the host key check fails on a second connection', async () => {
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'hostkeys'), { hostKey: `SHA256:${'A'.repeat(43)}` }));
    try {
      for (let i = 0; i < 2; i++) {
        await assert.rejects(() => driver.stat('x'), (err: unknown) => err instanceof OffsiteError && err.kind === 'auth');
      }
    } finally {
      await driver.close();
    }
  });
});
