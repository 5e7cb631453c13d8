/**
 * SFTP benchmark through the CLI (`npm run bench:sftp`): the same generated backup (a realistic
 * mix of file sizes from scripts/gen-backup.ts, 1 GiB by default) uploaded to the same
 * throwaway sshd (test/servers/sshd.ts: 127.0.0.1, its own port and keys), in the same run, by
 *
 *   (a) `offsite replicate NAME --to nas` (one sftp destination, default options),
 *   (b) OpenSSH's own client: `sftp -b BATCH` with `put -r` (default buffer and request count),
 *       and again with `put -r -f`, which fsyncs every file like offsite does (plain `put` leaves
 *       the data in the server's page cache: faster, and not the same promise),
 *       with the cipher offsite's ssh2 negotiates (aes128-gcm@openssh.com on a CPU with AES
 *       instructions), so that the comparison is about the clients, not the ciphers (OpenSSH's own
 *       first choice is chacha20-poly1305; rclone keeps its own default)
 *       (`--openssh-cipher default` lets OpenSSH choose),
 *   (c) `rclone copy` to an `:sftp:` remote configured on the command line, with
 *       `--sftp-disable-hashcheck` (rclone would otherwise run `md5sum` on the server over a new
 *       SSH session for every file, which measures something else; `--rclone-hashcheck` adds
 *       that variant too).
 *
 * Every contender is a child process timed from spawn to exit (connect and authentication
 * included, CPU seconds of the client process from GNU time, and apart from them the CPU seconds
 * of the sshd processes that served it), run once per round in a rotating order (the machine's load drifts), into a
 * cleaned folder; after every run the uploaded tree is checked (same files, same sizes). Prints
 * the median time, MiB/s and peak RSS of each, and the throughput ratios offsite/OpenSSH (target
 * >= 1.0x, issue #13) and offsite/rclone.
 *
 *   npm run bench:sftp
 *   npm run bench:sftp -- --size 256MiB --repeat 5
 *   npm run bench:sftp -- --files 40          # fewer, larger files (per-file costs matter less)
 *   npm run bench:sftp -- --baseline /tmp/old # also another built checkout, same settings, same rounds
 *   npm run bench:sftp -- --size 100MB --delay 25 # every contender through a WAN-like link (bench/proxy.ts)
 *
 * `--delay MS` (and `--rate`) put a proxy in this process between every contender and sshd
 * that holds every piece MS milliseconds each way (a round trip costs twice that): there the
 * requests each client keeps in flight, not its CPU, decide the time.
 */
import { Command } from 'commander';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBytes } from '../src/config/units.js';
import { generateBackup } from '../scripts/gen-backup.js';
import { baselineBinOf, loadAverage, median, offsiteBin as bin, positiveInteger, sizesUnder, timedAsync, totalSize, treeDifference, type Timed } from './lib.js';
import { startCountingProxy, type CountingProxy, type LinkOptions } from './proxy.js';
import { sftpConfigSection, startSshd, writeKnownHosts } from './sshd.js';

const program = new Command('bench-sftp-cli')
  .option('--size <size>', 'backup size', '1GiB')
  .option('--repeat <n>', 'runs of each contender (the median is reported)', '3')
  .option('--files <n>', 'approximate number of files (default: the generator\'s realistic mix for the size)')
  .option('--largest <size>', 'no file larger than this')
  .option('--seed <n>', 'generator seed', '42')
  .option('--rclone-hashcheck', "also time rclone with its default hash check (md5sum on the server per file)")
  .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-sftp-cli'))
  .option('--baseline <dir>', 'another built checkout whose offsite runs too, with the same settings (before/after in one run)')
  .option('--delay <ms>', 'one-way delay of a proxy every contender goes through, for a WAN-like link (a round trip costs twice this)', '0')
  .option('--rate <size>', 'with a proxy: most bytes per second each way, all connections together')
  .option('--openssh-cipher <name>', "OpenSSH's cipher (Ciphers=...), or 'default' for OpenSSH's own choice", 'aes128-gcm@openssh.com')
  .parse(process.argv);
const opts = program.opts<{ size: string; repeat: string; files?: string; largest?: string; seed: string; rcloneHashcheck?: boolean; dir: string; baseline?: string; delay: string; rate?: string; opensshCipher: string }>();
const MiB = 1024 * 1024;
const repeat = positiveInteger(opts.repeat, '--repeat');
const BACKUP = 'bench_backup';
const baselineBin = baselineBinOf(opts.baseline);
const delayMs = Number(opts.delay);
if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error('--delay must be a number of milliseconds, 0 or more');
const link: LinkOptions = { delayMs, ...(opts.rate !== undefined ? { bytesPerSecond: parseBytes(opts.rate, '--rate') } : {}) };
const throughProxy = delayMs > 0 || link.bytesPerSecond !== undefined;

interface Contender {
  readonly label: string;
  /** Where the backup's files land on the server (this machine). */
  readonly uploaded: string;
  readonly run: () => Promise<Timed>;
}

/** A run with the CPU seconds sshd spent serving it. */
interface Run extends Timed {
  readonly sshdCpuSeconds: number;
}

async function main(): Promise<void> {
  const dir = opts.dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const totalBytes = parseBytes(opts.size, '--size');
  const made = await generateBackup({
    root: join(dir, 'source'), name: BACKUP, totalBytes, seed: Number(opts.seed),
    ...(opts.files === undefined ? {} : { files: Number(opts.files) }),
    ...(opts.largest === undefined ? {} : { largestFileBytes: parseBytes(opts.largest, '--largest') }),
  });
  const local = join(dir, 'source', BACKUP);
  const expected = sizesUnder(local);
  const bytes = totalSize(expected);
  const largest = Math.max(...expected.values());

  const sshd = await startSshd(join(dir, 'sshd'));
  let proxy: CountingProxy | undefined;
  try {
    const { server } = sshd;
    proxy = throughProxy ? await startCountingProxy(server.port, server.host, link) : undefined;
    const port = proxy?.port ?? server.port;
    const remote = join(server.root, 'bench');
    const target = (name: string): string => join(remote, name);

    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(join(dir, 'source'))} }`,
      'destinations:',
      `  nas: ${sftpConfigSection(server, target('offsite'), port)}`,
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));

    const knownHosts = writeKnownHosts(join(dir, 'known_hosts'), server, port);
    const batch = join(dir, 'sftp-batch');
    // `-mkdir`: a batch line starting with '-' may fail (the folder may exist) without ending the batch.
    writeFileSync(batch, `-mkdir ${target('openssh')}\nput -r ${local} ${target('openssh')}/${BACKUP}\n`);
    const batchFsync = join(dir, 'sftp-batch-fsync');
    writeFileSync(batchFsync, `-mkdir ${target('openssh-f')}\nput -r -f ${local} ${target('openssh-f')}/${BACKUP}\n`);
    const sshOptions = ['-q', '-i', server.privateKey, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
      ...(opts.opensshCipher === 'default' ? [] : ['-o', `Ciphers=${opts.opensshCipher}`])];

    const rclone = (folder: string, extra: readonly string[]): Promise<Timed> =>
      // The environment may export AWS_CA_BUNDLE, which breaks only rclone's S3 backend: drop it.
      timedAsync('env', ['-u', 'AWS_CA_BUNDLE', 'rclone', 'copy', '--config', '/dev/null', local, `:sftp:${target(folder)}/${BACKUP}`,
        '--sftp-host', server.host, '--sftp-port', String(port), '--sftp-user', server.username,
        '--sftp-key-file', server.privateKey, '--sftp-known-hosts-file', knownHosts, ...extra]);

    const contenders: Contender[] = [
      { label: 'offsite replicate --to nas (sftp)', uploaded: join(target('offsite'), BACKUP), run: () => timedAsync(process.execPath, [bin, '--config', config, '--quiet', 'replicate', BACKUP, '--to', 'nas']) },
      { label: `OpenSSH sftp -b (put -r${opts.opensshCipher === 'default' ? '' : `, ${opts.opensshCipher.replace(/@.*/, '')}`})`, uploaded: join(target('openssh'), BACKUP), run: () => timedAsync('sftp', [...sshOptions, '-P', String(port), '-b', batch, `${server.username}@${server.host}`]) },
      { label: 'rclone copy --sftp-disable-hashcheck', uploaded: join(target('rclone'), BACKUP), run: () => rclone('rclone', ['--sftp-disable-hashcheck']) },
    ];
    if (baselineBin !== undefined) {
      contenders.push({ label: 'baseline replicate --to nas (sftp)', uploaded: join(target('offsite'), BACKUP), run: () => timedAsync(process.execPath, [baselineBin, '--config', config, '--quiet', 'replicate', BACKUP, '--to', 'nas']) });
    }
    if (opts.rcloneHashcheck) contenders.push({ label: 'rclone copy (md5sum check per file)', uploaded: join(target('rclone-hash'), BACKUP), run: () => rclone('rclone-hash', []) });
    const fsyncIndex = contenders.push({ label: 'OpenSSH sftp -b (put -r -f: fsync each)', uploaded: join(target('openssh-f'), BACKUP), run: () => timedAsync('sftp', [...sshOptions, '-P', String(port), '-b', batchFsync, `${server.username}@${server.host}`]) }) - 1;

    console.log(`\nload average before: ${loadAverage()}`);
    const through = proxy ? ` through a proxy adding ${delayMs} ms each way${opts.rate !== undefined ? `, ${opts.rate}/s` : ''}` : '';
    console.log(`${made.files} files, ${(bytes / MiB).toFixed(0)} MiB (largest ${(largest / MiB).toFixed(1)} MiB), to sshd on 127.0.0.1:${server.port}${through}; median of ${repeat}, rotating order`);
    const runs: Run[][] = contenders.map(() => []);
    for (let round = 0; round < repeat; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const i = (round + k) % contenders.length;
        const contender = contenders[i] as Contender;
        rmSync(remote, { recursive: true, force: true });
        mkdirSync(remote, { recursive: true });
        const sshdBefore = await sshd.servedCpuSeconds();
        const timed = await contender.run();
        const result: Run = { ...timed, sshdCpuSeconds: (await sshd.servedCpuSeconds()) - sshdBefore };
        const problem = treeDifference(expected, sizesUnder(contender.uploaded, '.offsite'));
        if (problem) throw new Error(`${contender.label}: the uploaded tree differs from the source: ${problem}`);
        runs[i]?.push(result);
      }
    }
    rmSync(remote, { recursive: true, force: true });

    const seconds = runs.map((r) => median(r.map((t) => t.seconds)));
    for (const [i, contender] of contenders.entries()) {
      const s = seconds[i] as number;
      const rss = Math.max(...(runs[i] ?? []).map((t) => t.maxRssMb));
      const cpu = median((runs[i] ?? []).map((t) => t.cpuSeconds));
      const sshdCpu = median((runs[i] ?? []).map((t) => t.sshdCpuSeconds));
      console.log(`  ${contender.label.padEnd(40)} ${s.toFixed(2).padStart(7)} s  ${(bytes / MiB / s).toFixed(0).padStart(5)} MiB/s  CPU ${cpu.toFixed(1).padStart(5)} s + sshd ${sshdCpu.toFixed(1).padStart(4)} s  peak RSS ${rss.toFixed(0).padStart(4)} MB  (runs: ${(runs[i] ?? []).map((t) => t.seconds.toFixed(2)).join(', ')} s)`);
    }
    const [ours = 1, openssh = 1, rcloneSeconds = 1] = seconds;
    const speedRatio = (theirs: number): string => `${(theirs / ours).toFixed(2)}x`;
    console.log(`  throughput ratio offsite / OpenSSH sftp = ${speedRatio(openssh)} (target >= 1.0x); offsite / rclone = ${speedRatio(rcloneSeconds)}` +
      `; offsite / OpenSSH put -f (fsync each file, as offsite) = ${speedRatio(seconds[fsyncIndex] as number)}` +
      (opts.rcloneHashcheck ? `; offsite / rclone with hash check = ${speedRatio(seconds[fsyncIndex - 1] as number)}` : ''));
    if (baselineBin !== undefined) console.log(`  offsite / baseline (${baselineBin}): time ${(ours / (seconds[3] as number)).toFixed(2)}x`);
    console.log(`load average after: ${loadAverage()}`);
  } finally {
    await proxy?.close();
    await sshd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
