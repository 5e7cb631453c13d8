/**
 * A real Ceph RADOS Gateway for the S3 and MinIO tests: a single-node cluster (1 mon, 1 OSD on
 * memstore, radosgw with the beast frontend) on 127.0.0.1, every file inside `workDir`. Installs
 * `radosgw ceph-mon ceph-osd ceph-common` with apt-get when `/usr/bin/radosgw` is missing.
 *
 * The settings follow shared/TEST-SERVERS.md (each was found the hard way): no cephx plus all
 * six `ms_*_mode = crc` (or radosgw waits for auth forever), pool size 1, small PG counts, fast
 * paxos intervals (12-15 s to start without them), memstore capped at 4 GiB of RAM, and a garbage
 * collector that frees deleted data within seconds (an OSD that fills up makes writes hang). Steps:
 * monmaptool, ceph-mon --mkfs + start, `ceph osd new`, ceph-osd --mkfs (with the same uuid, or
 * the mon refuses the OSD's boot: "different fsid") + start, radosgw, then a user with known
 * keys. Tests create their own buckets.
 *
 * Tests read `OFFSITE_TEST_S3` (JSON, see `S3TestServer`). `stop()` kills exactly the three
 * PIDs it started (from their pid files) and removes `workDir`.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort, portOpen } from './net.js';
import { join } from 'node:path';
import type { ServerHandle, ServerSpec } from './index.js';
import { aptInstall, sh } from './shell.js';


/** What the S3 tests receive in `OFFSITE_TEST_S3`. */
export interface S3TestServer {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

const PACKAGES = ['radosgw', 'ceph-mon', 'ceph-osd', 'ceph-common'];
const BINARIES = ['/usr/bin/radosgw', '/usr/bin/ceph-mon', '/usr/bin/ceph-osd', '/usr/bin/ceph', '/usr/bin/monmaptool', '/usr/bin/radosgw-admin'];
/**
 * RAM the OSD may fill (memstore). A full OSD makes every write hang (not fail), so deleted data
 * must really go: see the `rgw_gc_*` settings. Override with OFFSITE_TEST_RGW_MEMSTORE_MIB (read
 * at each start: a benchmark sets it for the size it sends).
 */
const memstoreBytes = (): number => Number(process.env['OFFSITE_TEST_RGW_MEMSTORE_MIB'] ?? 4096) * 1024 ** 2;
const START_TIMEOUT_MS = 60_000;


async function ensureCephInstalled(): Promise<void> {
  await aptInstall(PACKAGES, BINARIES);
}


const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, logHint: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms (see ${logHint})`);
    await sleep(25);
  }
}

/** Running (a zombie that PID 1 has not reaped yet counts as gone: it holds no port or memory). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopPids(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  }
  const deadline = Date.now() + 1000; // memstore: nothing to flush, the data is removed anyway
  while (pids.some(alive) && Date.now() < deadline) await sleep(25);
  for (const pid of pids.filter(alive)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  const killed = Date.now() + 2000;
  while (pids.some(alive) && Date.now() < killed) await sleep(25);
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon_host = 127.0.0.1:${monPort}
mon_initial_members = a
public_addr = 127.0.0.1
ms_bind_ipv4 = true
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_service_mode = crc
ms_cluster_mode = crc
ms_mon_service_mode = crc
ms_mon_cluster_mode = crc
keyring = /dev/null
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_objectstore = memstore
memstore_device_bytes = ${memstoreBytes()}
mon_data_avail_crit = 1
mon_data_avail_warn = 2
run_dir = ${dir}/run
admin_socket = ${dir}/run/$name.asok
pid_file = ${dir}/run/$name.pid
log_file = ${dir}/log/$name.log
[mon]
mon_data = ${dir}/mon/$name
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
[osd]
osd_data = ${dir}/osd/$name
[client.rgw.a]
rgw_data = ${dir}/rgw
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
# Deleted objects and aborted uploads leave their data to the garbage collector, which by
# default waits 2 h and runs hourly: in RAM that fills the OSD within a few test runs.
rgw_gc_obj_min_wait = 1
rgw_gc_processor_period = 2
rgw_gc_processor_max_time = 2
`;
}

async function start(workDir: string): Promise<ServerHandle> {
  await ensureCephInstalled();
  rmSync(workDir, { recursive: true, force: true });
  for (const sub of ['run', 'log', 'mon', 'osd', 'rgw']) mkdirSync(join(workDir, sub), { recursive: true });
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const conf = join(workDir, 'ceph.conf');
  const fsid = randomUUID();
  writeFileSync(conf, cephConf(workDir, fsid, monPort, rgwPort));
  const c = ['-c', conf];
  const pidFiles = ['client.rgw.a', 'osd.0', 'mon.a'].map((n) => join(workDir, 'run', `${n}.pid`));
  const started: number[] = [];
  const remember = async (file: string): Promise<void> => {
    await waitFor(`pid file ${file}`, () => readPid(file) !== undefined, 10_000, join(workDir, 'log'));
    started.push(readPid(file) as number);
  };
  try {
    const monmap = join(workDir, 'monmap');
    await sh('monmaptool', [...c, '--create', '--add', 'a', `127.0.0.1:${monPort}`, '--fsid', fsid, monmap]);
    await sh('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', monmap]);
    await sh('ceph-mon', [...c, '-i', 'a']); // forks; the child writes run/mon.a.pid
    await remember(pidFiles[2] as string);

    const osdUuid = randomUUID();
    const osdId = (await sh('ceph', [...c, '--connect-timeout', '20', 'osd', 'new', osdUuid], process.env, 30_000)).trim();
    if (osdId !== '0') throw new Error(`expected the first OSD to be osd.0, got ${JSON.stringify(osdId)}`);
    mkdirSync(join(workDir, 'osd', 'osd.0'), { recursive: true });
    await sh('ceph-osd', [...c, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    await sh('ceph-osd', [...c, '-i', '0']);
    await remember(pidFiles[1] as string);

    // radosgw waits for the OSD on its own while it creates its pools.
    await sh('radosgw', [...c, '-n', 'client.rgw.a']);
    await remember(pidFiles[0] as string);
    await waitFor(`radosgw listening on 127.0.0.1:${rgwPort}`, async () => {
      if (!started.every(alive)) throw new Error(`a ceph daemon died during start-up (see ${join(workDir, 'log')})`);
      return portOpen(rgwPort);
    }, START_TIMEOUT_MS, join(workDir, 'log'));

    const server: S3TestServer = {
      endpoint: `http://127.0.0.1:${rgwPort}`,
      region: 'us-east-1',
      accessKeyId: 'OFFSITETESTACCESSKEY',
      secretAccessKey: `offsite-test-secret-${randomUUID()}`,
    };
    // A separate admin socket: the default one ($name.asok) belongs to the running radosgw.
    await sh('radosgw-admin', [...c, '-n', 'client.admin', '--admin-socket', join(workDir, 'run', 'admin-cli.asok'), 'user', 'create',
      '--uid', 'offsite-test', '--display-name', 'offsite tests', '--access-key', server.accessKeyId, '--secret-key', server.secretAccessKey]);
    await waitFor('radosgw answering S3 requests', () => answers(server.endpoint), START_TIMEOUT_MS, join(workDir, 'log', 'client.rgw.a.log'));

    return {
      env: { OFFSITE_TEST_S3: JSON.stringify(server) },
      stop: async () => {
        await stopPids(started);
        rmSync(workDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    // Also the daemons whose pid file appeared after the failure.
    for (const file of pidFiles) {
      const pid = readPid(file);
      if (pid !== undefined && !started.includes(pid)) started.push(pid);
    }
    await stopPids(started);
    throw err;
  }
}

/** An anonymous ListBuckets answered with XML: the gateway and its pools are up. */
async function answers(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2000) });
    const body = await response.text();
    return response.ok && body.includes('ListAllMyBucketsResult');
  } catch {
    return false;
  }
}

export const rgwServer: ServerSpec = {
  name: 'rgw',
  errorEnv: 'OFFSITE_TEST_RGW_ERROR',
  neededBy: (testFile) => /s3|minio|rgw/.test(testFile.split('/dist/').pop() ?? testFile),
  start,
};
