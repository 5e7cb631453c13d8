/** The shipped example config parses, and every driver in it can be built from it (no IO). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { parseConfig } from '../../src/config/config.js';
import { createDriver } from '../../src/drivers/index.js';
import { projectRoot } from '../helpers/cli.js';

it('config/offsite.example.yaml is valid and names one driver of each kind', async () => {
  const file = join(projectRoot, 'config', 'offsite.example.yaml');
  const config = parseConfig(readFileSync(file, 'utf8'), file, {});
  const types = Object.values(config.destinations).map((d) => d['type']).sort();
  assert.deepEqual(types, ['local', 's3', 'sftp']);
  assert.equal(config.settings.retries, 5);
  assert.equal(config.settings.retryTimeoutMs, 600_000);
  for (const [name, section] of [['source', config.source], ...Object.entries(config.destinations)] as const) {
    const driver = await createDriver(name, section);
    assert.ok(driver.description.length > 0, name);
    await driver.close();
  }
});
