/**
 * SFTP identities against the real sshd (it serves this machine's file system): two roots on the
 * same host and port, one a symlink to the other (or under one, not created yet), are one place
 * by the server's real path although their paths differ; unrelated roots stay apart; and an SFTP
 * root on this machine that reaches a local root is recognised too.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { createDriver } from '../../src/drivers/index.js';
import { compareLocations } from '../../src/drivers/location.js';
import { OverlapError, refuseOverlappingPlaces, type Place } from '../../src/drivers/overlap.js';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor } from './server.js';

const opened: Driver[] = [];
after(async () => { await Promise.all(opened.map((d) => d.close())); await removeFreshRoots(); });

function place(driver: Driver, role: Place['role'] = 'destination'): Place {
  opened.push(driver);
  return { role, name: driver.name, description: driver.description, location: driver.location, identify: (o) => (driver.identify as NonNullable<Driver['identify']>)(o) };
}

describeWithServer('sftp identities (real sshd)', (server) => {
  it('a root that is a symlink to another root on the same server is the same place; one under it is inside', async () => {
    const dir = await freshRoot(server, 'identity');
    await mkdir(join(dir, 'real'), { recursive: true });
    await mkdir(join(dir, 'other'), { recursive: true });
    await symlink(join(dir, 'real'), join(dir, 'link'));
    const sftp = (name: string, root: string): SftpDriver => new SftpDriver(name, parseSftpOptions(name, sectionFor(server, root)));
    const a = sftp('a', join(dir, 'real'));
    const b = sftp('b', join(dir, 'link'));
    assert.equal(compareLocations(a.location, b.location), 'apart', 'the configured paths differ');
    await assert.rejects(refuseOverlappingPlaces([place(a), place(b)]), (err: unknown) => err instanceof OverlapError && /destination "a" .* is the same place as destination "b" .*"b" is really .*real/.test(err.message));
    await assert.rejects(refuseOverlappingPlaces([place(a), place(sftp('c', join(dir, 'link', 'not', 'yet')))]), (err: unknown) => err instanceof OverlapError && /destination "a" .* contains destination "c"/.test(err.message));
    await refuseOverlappingPlaces([place(a), place(sftp('d', join(dir, 'other')))]);
  });

  it('an SFTP root on this machine that is a local source through a symlink is refused', async () => {
    const dir = await freshRoot(server, 'identity-local');
    await mkdir(join(dir, 'backups'), { recursive: true });
    await symlink(join(dir, 'backups'), join(dir, 'via-ssh'));
    const source = await createDriver('source', { type: 'local', root: join(dir, 'backups') });
    const nas = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, join(dir, 'via-ssh'))));
    await assert.rejects(refuseOverlappingPlaces([place(source, 'source'), place(nas)]), (err: unknown) => err instanceof OverlapError && /destination "nas" \(sftp:.*\) is the same place as the source/.test(err.message));
  });

  it('strict: an SFTP place that cannot be reached is an error, not a pass', async () => {
    const dir = await freshRoot(server, 'identity-down');
    const a = new SftpDriver('a', parseSftpOptions('a', sectionFor(server, join(dir, 'x'))));
    const down = new SftpDriver('down', parseSftpOptions('down', sectionFor(server, join(dir, 'y'), { port: 1, readyTimeoutMs: 2000 })));
    // Different ports: these two cannot meet; an SFTP place on this machine next to a local root must be identified.
    const local = await createDriver('source', { type: 'local', root: join(dir, 'z') });
    await assert.rejects(refuseOverlappingPlaces([place(local, 'source'), place(down), place(a)], { strict: true }), /down: could not tell whether destination "down" .* is another place than the others .*nothing is deleted there until it can/);
    await refuseOverlappingPlaces([place(local, 'source'), place(down), place(a)]);
  });
});
