'use strict'
// `npm i pm-child` brings a working supervisor: a fresh project installs the two packed tarballs
// with no Rust toolchain on PATH and no PM_SUPERVISOR_BIN, and its main process starts a Node and
// a Python service through require('pm-child/supervisor') and stops them.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { TestDir, PLATFORM_PACKAGE, noRustEnv, installApp } = require('./support')

test('a fresh npm project runs and stops a Node and a Python service with the packed packages', async (t) => {
  const dir = new TestDir(t)
  const env = noRustEnv(dir)
  const app = installApp(path.join(dir.path, 'app'), env)
  const platform = path.join(app, 'node_modules', ...PLATFORM_PACKAGE.split('/'))

  const main = dir.spawn('app', process.execPath, [path.join(app, 'main.js')], { env })
  assert.deepStrictEqual(await main.wait(), { code: 0, signal: null }, `stdout:\n${main.stdout()}\nstderr:\n${main.stderr()}\nevents: ${JSON.stringify(dir.events())}`)

  const ev = (svc, kind) => dir.events().filter((e) => e.svc === svc && e.event === kind)
  assert.deepStrictEqual(ev('app', 'failed'), [])
  const [running] = ev('app', 'running')
  assert.equal(running.manager, path.join(app, 'node_modules', 'pm-child', 'supervisor.js'))
  const binary = path.join(platform, 'bin', 'pm-supervisor')
  assert.equal(running.supervisorPath, binary, 'the binary of the installed platform package')
  assert.equal(running.exe, binary)

  const [web] = ev('web', 'started')
  assert.equal(web.supervised, true)
  assert.equal(web.sdk, path.join(app, 'node_modules', 'pm-child', 'index.js'))
  const [worker] = ev('worker', 'started')
  assert.equal(worker.supervised, true)
  assert.equal(worker.file, path.join(platform, 'python', 'pm_child', '__init__.py'), 'pm_child from the platform package')
  assert.equal(worker.pythonpath, path.join(platform, 'python'))

  // A service's own PYTHONPATH comes after the shipped folder; PM_SHIPPED_PYTHONPATH=0 keeps it
  // out (this Python has no pm_child of its own).
  const probe = (svc) => dir.waitEvent(svc, 'probe')
  assert.deepStrictEqual(await probe('probe-path'), {
    svc: 'probe-path', event: 'probe', pm_child: worker.file, pythonpath: `${path.join(platform, 'python')}:/opt/extra`,
  })
  assert.deepStrictEqual(await probe('probe-optout'), { svc: 'probe-optout', event: 'probe', pm_child: null, pythonpath: null })

  // Both stopped cleanly, through their SDK's handler, before the app went on.
  assert.equal(ev('web', 'stop-handler').length, 1)
  assert.equal(ev('worker', 'stop-handler').length, 1)
  const [stopped] = ev('app', 'stopped')
  assert.deepStrictEqual(stopped.rows.map((r) => [r.name, r.state]), [['web', 'stopped'], ['worker', 'stopped']])
  await dir.waitAllGone()
  assert.ok(fs.existsSync(path.join(app, 'node_modules', 'pm-child', 'LICENSE-MIT')))
})
