'use strict'
// The manager inside a packaged Electron app, without Electron (it cannot be installed here):
// the controller fixture fakes process.versions.electron, process.resourcesPath,
// process.execPath and require('electron').app, and the app is a real app.asar plus
// app.asar.unpacked made with @electron/asar 3.x, as electron-builder's asarUnpack makes them.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const {
  MANAGER_FIXTURES, SERVICE, SUPERVISOR, TestDir, poll, alive, requireSupervisor, packApp, copyTree,
} = require('./support')
const { findSupervisor, defaultName, unpackedPath, insideAsar } = require('../supervisor')
const { adaptForElectron } = require('../lib/manager-spec')

test.before(requireSupervisor)

const byEvent = (dir, svc, kind) => dir.events().filter((e) => e.svc === svc && e.event === kind)

/** A stand-in for the Electron binary: runs Node, leaving a mark in the environment. */
function fakeElectron(dir) {
  const file = path.join(dir.path, 'fake-electron')
  fs.writeFileSync(file, `#!/bin/sh\nexport FAKE_ELECTRON_RAN=1\nexec '${process.execPath}' "$@"\n`, { mode: 0o755 })
  return file
}

function running(dir, ctl) {
  return poll(() => `the controller to run\nevents: ${JSON.stringify(dir.events())}\nstderr:\n${ctl.stderr()}`, () => {
    const failed = byEvent(dir, 'controller', 'failed')[0]
    if (failed) throw new Error(`the controller failed: ${JSON.stringify(failed)}\nstderr:\n${ctl.stderr()}`)
    if (!ctl.running()) throw new Error(`the controller exited early\nstderr:\n${ctl.stderr()}`)
    return byEvent(dir, 'controller', 'running')[0]
  })
}

test('in a packaged app: supervisor and Python from app.asar.unpacked, Node services on Electron as Node, clear errors for what is not unpacked', async (t) => {
  const dir = new TestDir(t)
  const src = path.join(dir.path, 'src')
  copyTree(path.join(MANAGER_FIXTURES, 'app'), src)
  fs.mkdirSync(path.join(src, 'bin'))
  fs.copyFileSync(SUPERVISOR, path.join(src, 'bin', 'pm-supervisor'))
  fs.chmodSync(path.join(src, 'bin', 'pm-supervisor'), 0o755)
  const resources = path.join(dir.path, 'resources')
  const asar = await packApp(src, resources, '{**/bin/*,**/services/py/worker.py}')
  const unpacked = `${asar}.unpacked`
  assert.ok(fs.statSync(asar).isFile())
  assert.ok(!fs.existsSync(path.join(unpacked, 'services', 'py', 'packed-only.py')), 'packed only, as intended')

  const ctl = dir.controller({
    launched: true,
    electron: {
      resources,
      execPath: fakeElectron(dir),
      // As an app would write it: path.join(__dirname, 'bin', 'pm-supervisor'), __dirname
      // being inside app.asar.
      supervisor: path.join(asar, 'bin', 'pm-supervisor'),
      asarSpecs: [
        { name: 'py', script: 'worker.py', cwd: path.join(asar, 'services', 'py') },
        { name: 'py-missing', script: path.join(asar, 'services', 'py', 'packed-only.py') },
        { name: 'node', script: SERVICE, killTimeout: 5000 },
        { name: 'node-packed', script: path.join(asar, 'services', 'node', 'packed-only.js') },
        { name: 'bundled', script: SERVICE, nodePath: process.execPath, killTimeout: 5000 },
      ],
    },
  })
  const report = await running(dir, ctl)
  const [py, pyMissing, node, nodePacked, bundled] = report.results

  // The binary inside app.asar was found, and run, at its unpacked path.
  const binary = path.join(unpacked, 'bin', 'pm-supervisor')
  assert.equal(report.supervisorPath, binary)
  assert.equal(fs.readlinkSync(`/proc/${report.supervisor}/exe`), binary)
  // ELECTRON_RUN_AS_NODE was set in the controller; the supervisor did not get it.
  assert.deepStrictEqual(report.supervisorEnv, [])
  // The instance is named after the app.
  assert.equal(report.name, 'Fake-App')
  assert.ok(fs.existsSync(path.join(dir.path, 'rt', 'Fake-App.sock')))

  // Python: script and cwd inside app.asar, run from app.asar.unpacked, without the variable.
  assert.equal(py.ok, true, JSON.stringify(py))
  const pyStarted = await dir.waitEvent('py', 'started')
  assert.equal(pyStarted.pid, py.row.pid)
  assert.equal(pyStarted.file, path.join(unpacked, 'services', 'py', 'worker.py'))
  assert.equal(pyStarted.cwd, path.join(unpacked, 'services', 'py'))
  assert.equal(pyStarted.env.ELECTRON_RUN_AS_NODE, null)

  // A Node script left inside the archive is launched there: Electron as Node reads it. (The
  // fake Electron here is plain Node, which cannot, so only the launch is checked.)
  assert.equal(nodePacked.ok, true, JSON.stringify(nodePacked))
  assert.ok(nodePacked.row.pid > 0)

  // Not unpacked: a clear error naming the field, the file and the fix; nothing started.
  for (const [result, file] of [[pyMissing, 'services/py/packed-only.py']]) {
    assert.equal(result.ok, false, JSON.stringify(result))
    assert.equal(result.error.isError, true)
    assert.equal(result.error.code, 'not_unpacked')
    assert.equal(result.error.field, 'script')
    assert.ok(result.error.message.includes(path.join(asar, file)), result.error.message)
    assert.ok(result.error.message.includes(path.join(unpacked, file)), result.error.message)
    assert.match(result.error.message, /asarUnpack/)
  }

  // Node: run by the app's own binary (process.execPath) as Node, fork-style.
  assert.equal(node.ok, true, JSON.stringify(node))
  const nodeStarted = await dir.waitEvent('node', 'started')
  assert.equal(nodeStarted.env.ELECTRON_RUN_AS_NODE, '1')
  assert.equal(nodeStarted.env.FAKE_ELECTRON_RAN, '1', 'launched through the fake Electron binary')
  assert.equal(nodeStarted.supervised, true, 'with the channel on fd 3')
  assert.equal(nodeStarted.argv[1], SERVICE)

  // A spec that names its own Node (a bundled one) is left to it.
  assert.equal(bundled.ok, true, JSON.stringify(bundled))
  const bundledStarted = await dir.waitEvent('bundled', 'started')
  assert.equal(bundledStarted.env.ELECTRON_RUN_AS_NODE, undefined)
  assert.equal(bundledStarted.env.FAKE_ELECTRON_RAN, undefined)
  assert.equal(bundledStarted.supervised, true)

  assert.deepStrictEqual(report.pids, [py.row.pid, node.row.pid, nodePacked.row.pid, bundled.row.pid])
})

test('Electron quit: before-quit is prevented once, onstopping runs, the services stop, then the app quits', async (t) => {
  const dir = new TestDir(t)
  const resources = path.join(dir.path, 'resources')
  fs.mkdirSync(resources)
  const ctl = dir.controller({
    specs: [{ name: 'a', script: SERVICE, killTimeout: 5000 }],
    after: 'quit',
    electron: { resources, execPath: fakeElectron(dir) },
  })
  assert.deepStrictEqual(await ctl.wait(), { code: 0, signal: null }, ctl.stderr())
  const [report] = byEvent(dir, 'controller', 'running')
  for (const pid of [...report.pids, report.supervisor]) assert.equal(alive(pid), false, `pid ${pid} is gone when the app has quit`)

  const events = dir.events()
  const kinds = events.filter((e) => e.svc === 'controller').map((e) => e.event + (e.prevented === undefined ? '' : `:${e.prevented}`))
  assert.deepStrictEqual(kinds.filter((k) => k.startsWith('before-quit') || k.startsWith('will-quit') || k === 'app-quit-called'),
    ['app-quit-called', 'before-quit:true', 'app-quit-called', 'before-quit:false', 'will-quit:false'], JSON.stringify(events))
  const at = (svc, kind) => events.findIndex((e) => e.svc === svc && e.event === kind)
  assert.deepStrictEqual(events[at('controller', 'onstopping-done')].alive, [true], 'the services ran until the handlers were done')
  assert.ok(at('controller', 'onstopping-done') < at('a', 'handler'), JSON.stringify(events))
  assert.ok(at('a', 'exit') < events.findLastIndex((e) => e.event === 'app-quit-called'), 'stopped before the second quit')
  assert.equal(events.at(-1).event, 'exit')
  assert.equal(events.at(-1).svc, 'controller')
})

test('asar paths: rewriting to app.asar.unpacked and finding the supervisor binary', (t) => {
  const dir = new TestDir(t)
  const res = path.join(dir.path, 'resources')
  assert.equal(unpackedPath(path.join(res, 'app.asar', 'bin', 'x')), path.join(res, 'app.asar.unpacked', 'bin', 'x'))
  assert.equal(unpackedPath(path.join(res, 'app.asar')), path.join(res, 'app.asar.unpacked'))
  assert.equal(unpackedPath(path.join(res, 'app', 'bin', 'x')), path.join(res, 'app', 'bin', 'x'))
  assert.equal(insideAsar(path.join(res, 'app.asar.unpacked', 'x')), false)
  assert.equal(insideAsar(path.join(res, 'other.asar', 'x')), true)

  const inAsar = path.join(res, 'app.asar', 'bin', 'pm-supervisor')
  const onDisk = path.join(res, 'app.asar.unpacked', 'bin', 'pm-supervisor')
  assert.throws(() => findSupervisor({ supervisorPath: inAsar }), (err) => {
    assert.equal(err.code, 'supervisor_not_found')
    assert.ok(err.message.includes(`${onDisk} (the supervisorPath option): not found`), err.message)
    assert.match(err.message, /inside an asar archive, so it must be unpacked: add it to electron-builder's "asarUnpack"/)
    return true
  })
  fs.mkdirSync(path.dirname(onDisk), { recursive: true })
  fs.writeFileSync(onDisk, '#!/bin/sh\n', { mode: 0o644 })
  assert.throws(() => findSupervisor({ supervisorPath: inAsar }), /not executable/)
  fs.chmodSync(onDisk, 0o755)
  assert.equal(findSupervisor({ supervisorPath: inAsar }), onDisk)
  // Then PM_SUPERVISOR_BIN (the platform package: test/supervisor-binary.test.js).
  assert.equal(findSupervisor({ env: { PM_SUPERVISOR_BIN: inAsar } }), onDisk)
})

test('Electron spec adaptation: what changes and what is left alone', (t) => {
  const dir = new TestDir(t)
  const asar = path.join(dir.path, 'app.asar')
  const unpacked = `${asar}.unpacked`
  fs.mkdirSync(path.join(unpacked, 'svc'), { recursive: true })
  fs.mkdirSync(path.join(unpacked, 'node', 'bin'), { recursive: true })
  fs.writeFileSync(path.join(unpacked, 'node', 'bin', 'node'), '', { mode: 0o755 })
  const ctx = { base: dir.path, execPath: '/opt/App/app' }
  const adapt = (spec) => adaptForElectron(spec, ctx)

  assert.deepStrictEqual(adapt({ script: 'a.js', env: { X: 1 } }),
    { script: 'a.js', env: { X: 1, ELECTRON_RUN_AS_NODE: '1' }, nodePath: '/opt/App/app' })
  assert.deepStrictEqual(adapt({ script: 'a.cjs', env: { ELECTRON_RUN_AS_NODE: '0' } }).env, { ELECTRON_RUN_AS_NODE: '0' })
  // Its own Node, or an interpreter: left to it. A bundled Node inside app.asar runs unpacked.
  assert.deepStrictEqual(adapt({ script: 'a.js', nodePath: 'node' }), { script: 'a.js', nodePath: 'node' })
  assert.deepStrictEqual(adapt({ script: 'a.js', interpreter: 'node' }), { script: 'a.js', interpreter: 'node' })
  assert.deepStrictEqual(adapt({ script: 'a.js', nodePath: path.join(asar, 'node', 'bin', 'node') }).nodePath, path.join(unpacked, 'node', 'bin', 'node'))
  assert.throws(() => adapt({ script: 'a.js', nodePath: path.join(asar, 'node', 'bin', 'nope') }), { code: 'not_unpacked', field: 'nodePath' })
  // Not Node: no variable, no nodePath.
  assert.deepStrictEqual(adapt({ script: 'tool', args: ['x'] }), { script: 'tool', args: ['x'] })
  // cwd: unpacked when it exists there, else a clear error.
  assert.deepStrictEqual(adapt({ script: 'redis-server', cwd: path.join(asar, 'svc') }),
    { script: 'redis-server', cwd: path.join(unpacked, 'svc') }, 'a bare command name is looked up on PATH: nothing to unpack')
  assert.throws(() => adapt({ script: 'x.py', cwd: path.join(asar, 'gone') }), (err) => {
    assert.equal(err.code, 'not_unpacked')
    assert.equal(err.field, 'cwd')
    assert.match(err.message, /cannot be a working folder/)
    return true
  })
  // A Node script run by Electron as Node stays in the archive; its working folder is the one
  // holding the archive when the folder was not unpacked.
  assert.deepStrictEqual(adapt({ script: 'main.js', cwd: path.join(asar, 'packed') }),
    { script: path.join(asar, 'packed', 'main.js'), cwd: dir.path, nodePath: '/opt/App/app', env: { ELECTRON_RUN_AS_NODE: '1' } })
  // With its own Node, it must be unpacked.
  assert.throws(() => adapt({ script: path.join(asar, 'x.js'), nodePath: 'node' }), { code: 'not_unpacked', field: 'script' })
  // A log cannot be written into the archive.
  assert.throws(() => adapt({ script: 'x.py', log: path.join(asar, 'x.log') }), { code: 'bad_spec', field: 'log' })
  // What is not a spec the supervisor would take is left for it to refuse, untouched.
  for (const spec of [undefined, null, 'a.js', [1], { script: 7 }, { script: 'a.js', cwd: 5 }, { script: 'a.js', cwd: '' }]) {
    assert.deepStrictEqual(adapt(spec), spec, JSON.stringify(spec))
  }
  assert.deepStrictEqual(adapt({ script: 'a.js', env: 'X=1' }), { script: 'a.js', env: 'X=1' })
  // null is "not set", as the supervisor reads it.
  assert.deepStrictEqual(adapt({ script: 'a.js', nodePath: null, env: null }), { script: 'a.js', nodePath: '/opt/App/app', env: { ELECTRON_RUN_AS_NODE: '1' } })
})

test('default instance names', () => {
  assert.equal(defaultName({ app: { getName: () => 'My App: Pro!' } }), 'My-App-Pro')
  assert.equal(defaultName({ app: { getName: () => '.hidden' } }), 'hidden')
  const a = defaultName({ main: '/srv/one/index.js' })
  assert.match(a, /^index-[0-9a-f]{8}$/)
  assert.equal(defaultName({ main: '/srv/one/index.js' }), a, 'stable across launches')
  assert.notEqual(defaultName({ main: '/srv/two/index.js' }), a, 'another app with the same script name gets another name')
})
