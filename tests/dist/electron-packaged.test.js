'use strict'
// A packaged Electron app, simulated: the fresh npm project of npm-install.test.js packed into
// app.asar with @electron/asar, the platform package and the services unpacked (as
// electron-builder's "asarUnpack": ["node_modules/@pm-child/**", "services/**"] does), and its
// main.js run from inside the archive with Electron faked (fixtures/fake-electron.js). The
// manager must find the binary at its app.asar.unpacked path, and the Python service must import
// pm_child from the platform package's unpacked copy.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { TestDir, FIXTURES, PLATFORM_PACKAGE, noRustEnv, installApp, packApp } = require('./support')

test('packaged app: the supervisor from app.asar.unpacked, pm_child for Python from its shipped copy', async (t) => {
  const dir = new TestDir(t)
  const env = noRustEnv(dir)
  const src = installApp(path.join(dir.path, 'src'), env)
  const resources = path.join(dir.path, 'resources')
  const asar = await packApp(src, resources, '{**/node_modules/@pm-child/**,**/services/**}')
  const unpacked = `${asar}.unpacked`
  assert.ok(fs.statSync(asar).isFile())
  assert.ok(!fs.existsSync(path.join(unpacked, 'node_modules', 'pm-child')), 'pm-child itself stays in the archive')
  fs.rmSync(src, { recursive: true })

  const main = dir.spawn('electron', process.execPath, [path.join(FIXTURES, 'fake-electron.js'), asar], { env: { ...env, APP_NODE_SERVICE: '0' } })
  assert.deepStrictEqual(await main.wait(), { code: 0, signal: null }, `stdout:\n${main.stdout()}\nstderr:\n${main.stderr()}\nevents: ${JSON.stringify(dir.events())}`)

  const ev = (svc, kind) => dir.events().filter((e) => e.svc === svc && e.event === kind)
  assert.deepStrictEqual(ev('app', 'failed'), [])
  const platform = path.join(unpacked, 'node_modules', ...PLATFORM_PACKAGE.split('/'))
  const [running] = ev('app', 'running')
  assert.equal(running.manager, path.join(asar, 'node_modules', 'pm-child', 'supervisor.js'), 'pm-child ran from inside the archive')
  assert.equal(running.supervisorPath, path.join(platform, 'bin', 'pm-supervisor'))
  assert.equal(running.exe, path.join(platform, 'bin', 'pm-supervisor'))

  const [worker] = ev('worker', 'started')
  assert.equal(worker.supervised, true)
  assert.equal(worker.file, path.join(platform, 'python', 'pm_child', '__init__.py'), 'pm_child from the unpacked platform package')
  assert.equal(ev('worker', 'stop-handler').length, 1)
  const [stopped] = ev('app', 'stopped')
  assert.deepStrictEqual(stopped.rows.map((r) => [r.name, r.state]), [['worker', 'stopped']])
  await dir.waitAllGone()
})
