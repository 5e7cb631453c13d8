/**
 * The Kubernetes Indexed Job in scripts/examples/offsite-shard-job.yaml is a Job a cluster
 * accepts and runs what the README says: checked field by field here (the schema facts an API
 * server would enforce for these fields), and by the Dockerfile it names: a non-root image with
 * `offsite` as its entrypoint.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { parseShardSpec } from '../../src/core/shard.js';
import { projectRoot } from '../helpers/cli.js';

interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
interface Container {
  name: string; image: string; args: string[]; env: EnvVar[];
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Job {
  apiVersion: string; kind: string; metadata: { name: string };
  spec: {
    completionMode: string; completions: number; parallelism: number; backoffLimitPerIndex: number;
    podFailurePolicy?: { rules: { action: string; onExitCodes?: { containerName?: string; operator: string; values: number[] } }[] };
    template: { spec: { restartPolicy: string; securityContext: { runAsNonRoot: boolean; runAsUser: number }; containers: Container[]; volumes: { name: string; secret?: { secretName: string }; emptyDir?: object }[] } };
  };
}

const jobText = readFileSync(join(projectRoot, 'scripts', 'examples', 'offsite-shard-job.yaml'), 'utf8');

describe('scripts/examples/offsite-shard-job.yaml', () => {
  const job = parse(jobText) as Job;

  it('is an Indexed Job with a retry budget per index', () => {
    assert.equal(job.apiVersion, 'batch/v1');
    assert.equal(job.kind, 'Job');
    assert.match(job.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a DNS-1123 name');
    assert.equal(job.spec.completionMode, 'Indexed');
    assert.ok(Number.isInteger(job.spec.completions) && job.spec.completions >= 1);
    assert.ok(job.spec.parallelism >= 1 && job.spec.parallelism <= job.spec.completions);
    assert.ok(Number.isInteger(job.spec.backoffLimitPerIndex) && job.spec.backoffLimitPerIndex >= 0);
    // The API server refuses backoffLimitPerIndex (and FailIndex rules) with any other restart policy.
    assert.equal(job.spec.template.spec.restartPolicy, 'Never');
    for (const rule of job.spec.podFailurePolicy?.rules ?? []) {
      assert.ok(['FailJob', 'FailIndex', 'Ignore', 'Count'].includes(rule.action), rule.action);
      if (rule.onExitCodes) {
        assert.ok(['In', 'NotIn'].includes(rule.onExitCodes.operator));
        assert.ok(!rule.onExitCodes.values.includes(0), 'exit code 0 is never a failure rule');
        assert.equal(rule.onExitCodes.containerName, 'offsite');
      }
    }
  });

  it('each pod runs one shard of one backup, the count given as JOB_COMPLETIONS', () => {
    const [container] = job.spec.template.spec.containers;
    assert.ok(container);
    assert.equal(container.name, 'offsite');
    const args = container.args;
    assert.equal(args[args.indexOf('--shard') + 1], 'auto');
    assert.ok(args.includes('replicate'));
    assert.match(args[args.indexOf('replicate') + 1] ?? '', /^[A-Za-z_][A-Za-z0-9_]*$/, 'a backup NAME, not --latest');
    const completions = container.env.find((e) => e.name === 'JOB_COMPLETIONS')?.value;
    assert.equal(completions, String(job.spec.completions));
    // What --shard auto makes of the last pod's environment.
    assert.deepEqual(parseShardSpec('auto', { JOB_COMPLETION_INDEX: String(job.spec.completions - 1), JOB_COMPLETIONS: completions }), { index: job.spec.completions - 1, count: job.spec.completions });
  });

  it('takes its config and keys from Secrets and runs without privileges', () => {
    const pod = job.spec.template.spec;
    const [container] = pod.containers;
    assert.ok(container);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.notEqual(pod.securityContext.runAsUser, 0);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    const configPath = container.args[container.args.indexOf('--config') + 1] ?? '';
    const mount = container.volumeMounts.find((m) => configPath.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `the config ${configPath} is on a mounted volume`);
    assert.equal(mount.readOnly, true);
    assert.ok(pod.volumes.find((v) => v.name === mount.name)?.secret?.secretName, 'that volume is a Secret');
    for (const e of container.env.filter((v) => /KEY|SECRET/.test(v.name))) {
      assert.ok(e.valueFrom?.secretKeyRef && e.value === undefined, `${e.name} comes from a Secret, never inline`);
    }
  });

  it('uses the Dockerfile\'s image: non-root, offsite as the entrypoint', () => {
    const dockerfile = readFileSync(join(projectRoot, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM node:20[^\n]*slim/m);
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, /^ENTRYPOINT \["node", "\/app\/bin\/offsite\.js"\]$/m);
  });
});
