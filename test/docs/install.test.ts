/*
 * What the README says about installing, held against the package. The
 * README's install text comes with its "## Operations" section (issue 11);
 * until that section is in, these wait (skipped, saying why).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; scripts: Record<string, string> };
const merged = /^## Operations$/m.test(readme) ? false : 'the README has no "## Operations" section yet (issue 11 adds it with the install text)';

test('README: never tells users to run npx phantom-gateway (outside a clone, npx asks the registry for a package of that name)', { skip: merged }, () => {
  const lines = readme.split('\n').flatMap((l, i) => (/\bnpx\s+phantom-gateway\b/.test(l) ? [`${i + 1}: ${l}`] : []));
  assert.deepEqual(lines, []);
  // From a clone the command is the bin file; installed, the bin name.
  assert.match(readme, /node bin\/phantom-gateway\.js --config/);
  assert.match(readme, /^phantom-gateway --config /m);
});

test('README: npm ci is not said to compile (the build runs on prepack, npm test, npm start and npm run build)', { skip: merged }, () => {
  assert.equal(pkg.scripts.prepare, undefined);
  const says = readme.split('\n').filter((l) => /compiles \(prepare\)|npm ci\s+#\s*installs and compiles/.test(l));
  assert.deepEqual(says, []);
  assert.match(readme, /npm ci --omit=dev/);
});

test('README: the deployment files and commands it names exist in the package', { skip: merged }, () => {
  for (const file of ['Dockerfile', 'docker-compose.yml', 'deploy/phantom-gateway.service', 'deploy/compose/gateway.yaml', 'LICENSE']) {
    assert.ok(readme.includes(file), `the README names ${file}`);
    assert.ok(existsSync(join(ROOT, file)), `${file} exists`);
  }
  // The tarball npm pack makes (name-version.tgz), as the README's install command names it.
  assert.ok(readme.includes(`${pkg.name}-*.tgz`), `the README installs ./${pkg.name}-*.tgz`);
  // The demo's printed commands, as the README shows them, are continued over lines.
  assert.match(readme, /TOKEN=\$\(curl -s -X POST http:\/\/localhost:8443\/oauth\/v2\/oauth-token \\\n/);
});
