/**
 * SFTP benchmark: the sftp driver against OpenSSH's own client (`sftp -b`) and `rclone`, to
 * the same throwaway sshd (test/servers/sshd.ts: 127.0.0.1, own port), same data, same run.
 *
 *   node dist/bench/sftp.js                     # 200 MiB upload + download, median of 3
 *   node dist/bench/sftp.js --size 1GiB --repeat 5
 *   node dist/bench/sftp.js --sweep             # also requestBytes x concurrencyPerFile x connections
 *
 * The driver is driven like the engine drives it: 8 MiB parts read from a local file, two parts
 * of a file in flight at once (`partConcurrency` 2), `commit` at the end (size check + fsync +
 * rename). Figures are MiB/s; ratios are ours / OpenSSH's.
 */
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { partCount, partRange } from '../src/drivers/keys.js';
import { parseSftpOptions, SftpDriver } from '../src/drivers/sftp/index.js';
import { sshdServer, type SftpTestServer } from '../test/servers/sshd.js';
import { median } from './lib.js';

const program = new Command('bench-sftp')
  .option('--size <MiB>', 'file size in MiB', '200')
  .option('--repeat <n>', 'runs of each measurement (the median is reported)', '3')
  .option('--sweep', 'also sweep requestBytes, concurrencyPerFile and connections')
  .option('--dir <dir>', 'work folder', join(tmpdir(), 'offsite-bench-sftp'))
  .parse(process.argv);
const opts = program.opts<{ size: string; repeat: string; sweep?: boolean; dir: string }>();
const MiB = 1024 * 1024;
const sizeBytes = Number(opts.size) * MiB;
const repeat = Number(opts.repeat);
const PART = 8 * MiB;

function mibPerSecond(bytes: number, seconds: number): number {
  return bytes / MiB / seconds;
}

async function timeIt(run: () => Promise<void> | void): Promise<number> {
  const started = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function runOrThrow(command: string, args: string[], env?: NodeJS.ProcessEnv): void {
  const result = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr.toString().slice(-1000)}`);
}

function sshArgs(server: SftpTestServer): string[] {
  return ['-q', '-i', server.privateKey, '-o', `UserKnownHostsFile=${server.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes', '-P', String(server.port)];
}

function opensshPut(server: SftpTestServer, local: string, remote: string): void {
  const batch = join(opts.dir, 'batch-put');
  writeFileSync(batch, `put ${local} ${remote}\n`);
  runOrThrow('sftp', [...sshArgs(server), '-b', batch, `${server.username}@${server.host}`]);
}

function opensshGetFile(server: SftpTestServer, remote: string, local: string): void {
  const batch = join(opts.dir, 'batch-get');
  writeFileSync(batch, `get ${remote} ${local}\n`);
  runOrThrow('sftp', [...sshArgs(server), '-b', batch, `${server.username}@${server.host}`]);
}

function rcloneRemote(server: SftpTestServer, path: string): string {
  return `:sftp,host=${server.host},port=${server.port},user=${server.username},key_file=${server.privateKey},known_hosts_file=${server.knownHostsFile}:${path}`;
}

function haveRclone(): boolean {
  return spawnSync('rclone', ['version'], { stdio: 'ignore' }).status === 0;
}

function rcloneCopy(from: string, to: string): void {
  // The environment may export AWS_CA_BUNDLE, which only matters to rclone's S3 backend.
  runOrThrow('rclone', ['copyto', '--config', '/dev/null', '--retries', '1', from, to], { AWS_CA_BUNDLE: '' });
}

function driverFor(server: SftpTestServer, root: string, overrides: Record<string, unknown> = {}): SftpDriver {
  const section = { type: 'sftp', host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, hostKey: server.hostKeyFingerprint, root, ...overrides };
  return new SftpDriver('bench', parseSftpOptions('bench', section));
}

/** Uploads `local` like the engine does: 8 MiB parts read from disk, `partConcurrency` at once. */
async function driverPut(driver: SftpDriver, local: string, key: string, size: number, partConcurrency = 2): Promise<void> {
  const file = await open(local, 'r');
  try {
    const session = await driver.openWrite(key, { size, partBytes: PART });
    const parts = partCount(size, PART);
    let next = 0;
    const parallel = driver.capabilities.parallelPartWrites ? partConcurrency : 1;
    await Promise.all(Array.from({ length: parallel }, async () => {
      const buffer = Buffer.allocUnsafe(PART);
      while (next < parts) {
        const index = next++;
        const { start, end } = partRange(index, size, PART);
        const { bytesRead } = await file.read(buffer, 0, end - start, start);
        await session.write(index, buffer.subarray(0, bytesRead));
      }
    }));
    await session.commit({ hash: 'xxh64:0000000000000000' });
  } finally {
    await file.close();
  }
}

async function driverGet(driver: SftpDriver, key: string, local: string): Promise<void> {
  const file = await open(local, 'w');
  try {
    const stream = await driver.openRead(key);
    for await (const chunk of stream) await file.write(chunk as Buffer);
  } finally {
    await file.close();
  }
}

async function main(): Promise<void> {
  rmSync(opts.dir, { recursive: true, force: true });
  mkdirSync(opts.dir, { recursive: true });
  const local = join(opts.dir, 'data.bin');
  const chunk = Buffer.allocUnsafe(MiB);
  const file = await open(local, 'w');
  for (let written = 0; written < sizeBytes; written += MiB) await file.write(randomFillSync(chunk), 0, Math.min(MiB, sizeBytes - written));
  await file.close();

  const handle = await sshdServer.start(join(opts.dir, 'sshd'));
  try {
    const server = JSON.parse(handle.env['OFFSITE_TEST_SFTP'] as string) as SftpTestServer;
    const remote = join(server.root, 'bench');
    mkdirSync(remote, { recursive: true });
    const cleanRemote = (): void => {
      rmSync(remote, { recursive: true, force: true });
      mkdirSync(remote, { recursive: true });
    };
    interface Contender {
      readonly label: string;
      readonly run: () => Promise<void> | void;
    }
    /** Runs every contender once per round, interleaved (the machine's load drifts), and prints medians. */
    const compare = async (contenders: readonly Contender[], before: () => void): Promise<number[]> => {
      const seconds: number[][] = contenders.map(() => []);
      for (let round = 0; round < repeat; round++) {
        for (const [i, contender] of contenders.entries()) {
          before();
          seconds[i]?.push(await timeIt(contender.run));
        }
      }
      return contenders.map((contender, i) => {
        const runs = seconds[i] ?? [];
        const speed = mibPerSecond(sizeBytes, median(runs));
        console.log(`  ${contender.label.padEnd(58)} ${speed.toFixed(0).padStart(5)} MiB/s  (runs: ${runs.map((r) => r.toFixed(2)).join(', ')} s)`);
        return speed;
      });
    };
    /** A fresh driver per run, so that connecting (handshake, auth) is timed as for the CLIs. */
    const withDriver = async (body: (driver: SftpDriver) => Promise<void>): Promise<void> => {
      const driver = driverFor(server, remote);
      try {
        await body(driver);
      } finally {
        await driver.close();
      }
    };

    console.log(`\nupload of one ${opts.size} MiB file to sshd on 127.0.0.1 (median of ${repeat}, interleaved)`);
    const uploads: Contender[] = [
      { label: 'OpenSSH sftp -b put', run: () => opensshPut(server, local, join(remote, 'openssh.bin')) },
      { label: 'offsite sftp driver (defaults, connect included)', run: () => withDriver((driver) => driverPut(driver, local, 'ours.bin', sizeBytes)) },
    ];
    if (haveRclone()) uploads.push({ label: 'rclone copyto (sftp backend)', run: () => rcloneCopy(local, rcloneRemote(server, join(remote, 'rclone.bin'))) });
    const [openssh = 1, ours = 0, rclone] = await compare(uploads, cleanRemote);
    console.log(`  ratio offsite / OpenSSH = ${(ours / openssh).toFixed(2)}x (target >= 0.80x)${rclone ? `; offsite / rclone = ${(ours / rclone).toFixed(2)}x` : ''}`);

    console.log(`\ndownload of the same file (median of ${repeat}, interleaved)`);
    await withDriver((driver) => driverPut(driver, local, 'source.bin', sizeBytes));
    const target = join(opts.dir, 'download.bin');
    const [opensshGet = 1, oursGet = 0] = await compare([
      { label: 'OpenSSH sftp -b get', run: () => opensshGetFile(server, join(remote, 'source.bin'), target) },
      { label: 'offsite sftp driver openRead (connect included)', run: () => withDriver((driver) => driverGet(driver, 'source.bin', target)) },
    ], () => rmSync(target, { force: true }));
    console.log(`  ratio offsite / OpenSSH = ${(oursGet / opensshGet).toFixed(2)}x`);

    if (opts.sweep) {
      console.log('\nsweep: one file, requestBytes x concurrencyPerFile (MiB/s)');
      for (const requestBytes of [32 * 1024, 64 * 1024, 128 * 1024, 261_120]) {
        const row: string[] = [];
        for (const concurrencyPerFile of [1, 4, 8, 16, 32, 64]) {
          const tuned = driverFor(server, remote, { requestBytes, concurrencyPerFile });
          try {
            const seconds: number[] = [];
            for (let i = 0; i < repeat; i++) {
              cleanRemote();
              seconds.push(await timeIt(() => driverPut(tuned, local, 'sweep.bin', sizeBytes)));
            }
            row.push(`c${concurrencyPerFile}=${mibPerSecond(sizeBytes, median(seconds)).toFixed(0)}`);
          } finally {
            await tuned.close();
          }
        }
        console.log(`  requestBytes ${String(requestBytes).padStart(6)}: ${row.join('  ')}`);
      }
      console.log('\nsweep: 8 files of size/8 at once, connections (MiB/s)');
      for (const connections of [1, 2, 4]) {
        const pooled = driverFor(server, remote, { connections });
        try {
          const seconds: number[] = [];
          const each = Math.floor(sizeBytes / 8);
          for (let i = 0; i < repeat; i++) {
            cleanRemote();
            seconds.push(await timeIt(async () => {
              await Promise.all(Array.from({ length: 8 }, (_, n) => driverPut(pooled, local, `many/${n}.bin`, each)));
            }));
          }
          console.log(`  connections ${connections}: ${mibPerSecond(each * 8, median(seconds)).toFixed(0)} MiB/s`);
        } finally {
          await pooled.close();
        }
      }
    }
  } finally {
    await handle.stop();
    rmSync(opts.dir, { recursive: true, force: true });
  }
}

await main();
