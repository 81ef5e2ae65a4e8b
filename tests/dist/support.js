'use strict'
// Shared by the npm tests of make test-dist: the packed tarballs in dist/npm/, an environment
// with no Rust toolchain on PATH, and a fresh npm project with the tarballs installed. Processes
// are marked and cleaned up by the Node SDK's TestDir (child-sdk-node/test/support.js).

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..', '..')
const DIST = path.join(ROOT, 'dist')
const FIXTURES = path.join(__dirname, 'fixtures')
const PLATFORM_PACKAGE = '@pm-child/linux-x64-gnu'
const support = require(path.join(ROOT, 'child-sdk-node', 'test', 'support'))

/** The two tarballs `make dist` packed: pm-child and the linux-x64-gnu platform package. */
function tarballs() {
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'child-sdk-node', 'package.json'), 'utf8')).version
  const files = [`pm-child-${version}.tgz`, `pm-child-linux-x64-gnu-${version}.tgz`].map((f) => path.join(DIST, 'npm', f))
  for (const f of files) assert.ok(fs.existsSync(f), `${f} is missing: run make dist`)
  return files
}

/** A PATH of the system folders only: node, npm and python3 are there; cargo and rustc not. */
const BARE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** The environment of a user without Rust: no cargo or rustc on PATH, no PM_SUPERVISOR_BIN. */
function noRustEnv(dir) {
  const env = dir.env({ PATH: BARE_PATH })
  delete env.PM_SUPERVISOR_BIN
  for (const k of Object.keys(env)) if (k.startsWith('CARGO') || k.startsWith('RUSTUP')) delete env[k]
  for (const tool of ['cargo', 'rustc']) {
    for (const d of BARE_PATH.split(':')) assert.ok(!fs.existsSync(path.join(d, tool)), `${tool} in ${d}: the test needs a PATH without Rust`)
  }
  for (const tool of ['node', 'npm', 'python3']) {
    assert.ok(BARE_PATH.split(':').some((d) => fs.existsSync(path.join(d, tool))), `no ${tool} in ${BARE_PATH}`)
  }
  // The Python the supervisor will find has no pm_child of its own: the service must get the
  // shipped one.
  const probe = require('node:child_process').spawnSync('python3', ['-c', 'import pm_child'], { env, encoding: 'utf8' })
  assert.notEqual(probe.status, 0, `python3 on ${BARE_PATH} has pm_child installed; the test needs one without`)
  return env
}

/**
 * A fresh npm project in `root` with the app fixture (main.js, services/) and the two tarballs
 * installed as a user would (npm install; --offline, so that the optional dependencies of
 * platforms not built here are skipped without asking the registry). Returns the project path.
 */
function installApp(root, env) {
  fs.cpSync(path.join(FIXTURES, 'app'), root, { recursive: true })
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'pm-dist-test-app', version: '1.0.0', private: true, main: 'main.js' }))
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs()], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] })
  const platform = path.join(root, 'node_modules', ...PLATFORM_PACKAGE.split('/'))
  assert.ok(fs.existsSync(path.join(platform, 'bin', 'pm-supervisor')), 'the platform package brought the binary')
  return root
}

module.exports = { ...support, ROOT, DIST, FIXTURES, PLATFORM_PACKAGE, BARE_PATH, tarballs, noRustEnv, installApp }
