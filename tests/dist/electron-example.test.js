'use strict'
// examples/electron-app as its README says to package it, without Electron: installed with the
// packed packages (no Rust on PATH), packed into app.asar with the "asarUnpack" globs of its
// package.json, and its own main.js run from inside the archive with Electron faked
// (fixtures/fake-electron.js). The window must show the Node service's page, the Python service
// must work (with the pm_child that came with the supervisor), and a quit must stop both
// through their stop handling before the app exits.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const { TestDir, ROOT, FIXTURES, PLATFORM_PACKAGE, poll, noRustEnv, tarballs, packApp } = require('./support')

const EXAMPLE = path.join(ROOT, 'examples', 'electron-app')

/** A TCP port nothing listens on now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

test('examples/electron-app, packaged with its asarUnpack config, runs and quits cleanly', async (t) => {
  const dir = new TestDir(t)
  const env = noRustEnv(dir)
  const src = path.join(dir.path, 'src')
  fs.mkdirSync(src)
  for (const f of ['main.js', 'services']) fs.cpSync(path.join(EXAMPLE, f), path.join(src, f), { recursive: true })
  // Its package.json without electron and electron-builder (not installable here); the packed
  // pm-child and platform package stand for the published ones.
  const pkg = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'package.json'), 'utf8'))
  const { build } = pkg
  delete pkg.devDependencies
  delete pkg.dependencies
  fs.writeFileSync(path.join(src, 'package.json'), JSON.stringify(pkg, null, 2))
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs()], { cwd: src, env, stdio: ['ignore', 'ignore', 'pipe'] })

  // electron-builder matches "asarUnpack" globs against paths inside the app folder.
  assert.deepStrictEqual(build.asarUnpack, ['node_modules/@pm-child/**', 'services/**'])
  const asar = await packApp(src, path.join(dir.path, 'resources'), `{${build.asarUnpack.map((g) => `**/${g}`).join(',')}}`)
  const unpacked = `${asar}.unpacked`
  fs.rmSync(src, { recursive: true })

  const logs = path.join(dir.path, 'logs')
  const port = await freePort()
  const electron = dir.spawn('electron', process.execPath, [path.join(FIXTURES, 'fake-electron.js'), asar], {
    env: { ...env, FAKE_ELECTRON_LOGS: logs, PM_EXAMPLE_PORT: String(port) },
  })
  const ev = (kind) => dir.events().filter((e) => e.svc === 'electron' && e.event === kind)
  const loaded = await poll(() => `the window to load\nevents: ${JSON.stringify(dir.events())}\nstderr:\n${electron.stderr()}`, () => {
    if (ev('error-box').length) throw new Error(`the app showed an error: ${JSON.stringify(ev('error-box'))}`)
    if (!electron.running()) throw new Error(`the app exited\nstdout:\n${electron.stdout()}\nstderr:\n${electron.stderr()}`)
    return ev('window-loaded')[0]
  })
  assert.equal(loaded.url, `http://127.0.0.1:${port}/`)
  assert.equal(loaded.status, 200)
  // Served by the Node service, run as Electron runs Node (here the fake's binary is Node itself).
  const api = Number(/^<h1>pm example<\/h1><p>Served by pid (\d+),/.exec(loaded.body)?.[1])
  assert.ok(api > 0, loaded.body)
  assert.ok(fs.readFileSync(`/proc/${api}/environ`, 'utf8').split('\0').includes('ELECTRON_RUN_AS_NODE=1'))

  const read = (name) => {
    try {
      return fs.readFileSync(path.join(logs, name), 'utf8')
    } catch {
      return ''
    }
  }
  await poll(() => `the worker's first job\nworker.log:\n${read('worker.log')}`, () => read('worker.log').includes('worker: job 1 done'))
  // The supervisor runs from the unpacked platform package, under the app's name.
  const supervisor = dir.live().find((p) => p.cmd.includes(' serve --name=pm-example'))
  assert.ok(supervisor, JSON.stringify(dir.live()))
  assert.equal(fs.readlinkSync(`/proc/${supervisor.pid}/exe`),
    path.join(unpacked, 'node_modules', ...PLATFORM_PACKAGE.split('/'), 'bin', 'pm-supervisor'))

  // Quit (Electron turns SIGTERM into a quit): both services stop through their own handling.
  electron.signal('SIGTERM')
  assert.deepStrictEqual(await electron.wait(), { code: 0, signal: null }, electron.stderr())
  assert.deepStrictEqual(ev('error-box'), [])
  assert.match(read('worker.log'), /worker: stopping\n.*worker pm {2}\| stopped: exit code 0/s)
  assert.match(read('api.log'), /api pm {2}\| stopped: exit code 0/)
  await dir.waitAllGone()
})
