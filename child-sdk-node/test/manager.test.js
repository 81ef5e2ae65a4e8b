'use strict'
// The manager (pm-child/supervisor) driving the real supervisor from this test process: when
// each call resolves, what it acts on, its errors, and the events it passes on.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const { SERVICE, SUPERVISOR, TestDir, poll, alive, requireSupervisor } = require('./support')

test.before(requireSupervisor)

/** A service of the fixture: name, args and a killTimeout long enough never to be what stops it. */
const service = (name, args = [], extra = {}) => ({ ...(name === null ? {} : { name }), script: SERVICE, args, killTimeout: 5000, ...extra })

const byEvent = (dir, svc, kind) => dir.events().filter((e) => e.svc === svc && e.event === kind)

test('start resolves once launched; with wait: "ready", once the service said ready', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()

  const launched = await m.start(service('a', ['400']))
  assert.equal(launched.name, 'a')
  assert.equal(launched.state, 'running')
  assert.equal(launched.ready, false, 'not ready yet: it says so 400 ms after it starts')
  assert.ok(Number.isInteger(launched.pid) && alive(launched.pid), `pid ${launched.pid} is running`)

  const before = Date.now()
  const ready = await m.start(service('b', ['400']), { wait: 'ready', timeout: 10_000 })
  assert.equal(ready.ready, true)
  assert.equal(ready.state, 'running')
  assert.ok(alive(ready.pid))
  // The service writes its 'ready' line just before it tells the supervisor.
  assert.equal(byEvent(dir, 'b', 'ready').length, 1, 'the service had said ready when start resolved')
  assert.ok(Date.now() - before >= 400, 'start waited for the ready that came 400 ms after launch')
})

test('stop resolves once the processes are gone, restart once the new one runs, stopall once all are gone', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const a = await m.start(service('a'), { wait: 'ready' })
  const b = await m.start(service('b'), { wait: 'ready' })
  const c = await m.start(service('c'), { wait: 'ready' })

  const stopped = await m.stop('a')
  assert.equal(alive(a.pid), false, `pid ${a.pid} is gone when stop resolves`)
  assert.deepStrictEqual(stopped.map((r) => [r.name, r.state, r.pid]), [['a', 'stopped', null]])
  assert.deepStrictEqual(byEvent(dir, 'a', 'handler').map((e) => e.pid), [a.pid], 'its stop handler ran')
  assert.deepStrictEqual(byEvent(dir, 'a', 'exit').map((e) => e.code), [0])
  assert.ok(alive(b.pid) && alive(c.pid), 'the others still run')

  const restarted = await m.restart('b')
  assert.equal(restarted.length, 1)
  const newPid = restarted[0].pid
  assert.ok(Number.isInteger(newPid) && newPid !== b.pid, JSON.stringify(restarted))
  assert.equal(alive(b.pid), false, 'the old process is gone')
  assert.ok(alive(newPid), 'the new process runs when restart resolves')
  assert.equal(restarted[0].restarts, 1)
  // Launched is not ready: let it install its stop handler before it is stopped again.
  await poll('the new b to be ready', () => byEvent(dir, 'b', 'ready').some((e) => e.pid === newPid))

  const all = await m.stopall()
  assert.deepStrictEqual(all.map((r) => [r.name, r.state]).sort(), [['a', 'stopped'], ['b', 'stopped'], ['c', 'stopped']])
  for (const pid of [newPid, c.pid]) assert.equal(alive(pid), false, `pid ${pid} is gone when stopall resolves`)
  assert.equal(byEvent(dir, 'b', 'handler').length, 2, 'b stopped twice: restart and stopall')
  assert.equal(byEvent(dir, 'c', 'handler').length, 1)
  assert.ok(alive(m.pid), 'the supervisor keeps running after stopall')
})

test('describe tells the process group, exits and resolved spec of a service; delete stops it and forgets it', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const a = await m.start(service('a', [], { cwd: dir.path }), { wait: 'ready' })
  await m.start(service('keep'), { wait: 'ready' })
  await m.restart('a')

  const [d, ...more] = await m.describe('a')
  assert.equal(more.length, 0)
  assert.equal(d.name, 'a')
  assert.equal(d.pids[0], d.pid, 'the process first among its group')
  assert.ok(alive(d.pid) && d.pid !== a.pid)
  assert.deepStrictEqual(d.exits.map((e) => [e.pid, e.requested]), [[a.pid, true]], 'the restart is its one exit')
  assert.equal(d.spec.cwd, dir.path)
  assert.equal(d.spec.killTimeout, 5000)
  assert.ok(!Number.isNaN(Date.parse(d.since)) && !Number.isNaN(Date.parse(d.started)))

  // Launched is not ready: let it install its stop handler before it is deleted.
  await poll('the new a to be ready', () => byEvent(dir, 'a', 'ready').some((e) => e.pid === d.pid))
  const deleted = await m.delete('a')
  assert.deepStrictEqual(deleted.map((r) => [r.name, r.pid]), [['a', null]])
  assert.equal(alive(d.pid), false, 'its process is gone when delete resolves')
  assert.deepStrictEqual((await m.list()).map((r) => r.name), ['keep'], 'forgotten; the other stays')
  await assert.rejects(m.describe('a'), (e) => e.code === 'no_such_service')
  await assert.rejects(m.delete('a'), (e) => e.code === 'no_such_service')
})

test('actions by name apply to every service with that name', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const d1 = await m.start(service('dup'), { wait: 'ready' })
  const d2 = await m.start(service('dup'), { wait: 'ready' })
  const other = await m.start(service('other'), { wait: 'ready' })

  assert.equal(await m.send('dup', { n: 1 }), 2)
  await poll('both dup processes to get the message', () => byEvent(dir, 'dup', 'message').length === 2)
  assert.deepStrictEqual(byEvent(dir, 'dup', 'message').map((e) => e.pid).sort(), [d1.pid, d2.pid].sort())

  const restarted = await m.restart('dup')
  assert.equal(restarted.length, 2)
  const fresh = restarted.map((r) => r.pid)
  for (const pid of fresh) assert.ok(alive(pid))
  for (const pid of [d1.pid, d2.pid]) assert.equal(alive(pid), false)

  const stopped = await m.stop('dup')
  assert.deepStrictEqual(stopped.map((r) => [r.name, r.state]), [['dup', 'stopped'], ['dup', 'stopped']])
  for (const pid of fresh) assert.equal(alive(pid), false)
  assert.ok(alive(other.pid), 'a service with another name is untouched')
  assert.deepStrictEqual((await m.list()).map((r) => [r.name, r.state]), [['dup', 'stopped'], ['dup', 'stopped'], ['other', 'running']])
})

test('a nameless service cannot be acted on by name, but stopall stops it', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const row = await m.start(service(null), { wait: 'ready' })
  assert.equal(row.name, null)
  for (const name of ['', 'service', 'service.js', 'nameless']) {
    await assert.rejects(m.stop(name), (err) => {
      assert.ok(err instanceof Error)
      assert.equal(err.code, 'no_such_service')
      assert.match(err.message, /no service named/)
      return true
    }, `stop(${JSON.stringify(name)})`)
  }
  await assert.rejects(m.send('service', 1), { code: 'no_such_service' })
  assert.ok(alive(row.pid), 'still running')
  const all = await m.stopall()
  assert.deepStrictEqual(all.map((r) => [r.name, r.state]), [[null, 'stopped']])
  assert.equal(alive(row.pid), false)
  assert.equal(byEvent(dir, 'nameless', 'handler').length, 1)
})

test('wait: "ready" gives up after its timeout with code "timeout", and the service keeps running', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const before = Date.now()
  await assert.rejects(m.start(service('late', ['never']), { wait: 'ready', timeout: 300 }), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'timeout')
    assert.match(err.message, /not ready after 300 ms/)
    return true
  })
  assert.ok(Date.now() - before >= 300)
  const [row] = await m.list()
  assert.equal(row.name, 'late')
  assert.equal(row.ready, false)
  assert.ok(alive(row.pid), 'it keeps running')
  await m.stopall()
  assert.equal(alive(row.pid), false)
})

test('a bad spec rejects with code "bad_spec", the field as data and the supervisor\'s message; nothing starts', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  // The supervisor checks every spec (the manager sends it as given): what the reply says is
  // what the call rejects with.
  const cases = [
    [undefined, '', /^spec: missing$/],
    ['a.js', '', /^spec: invalid type: string "a\.js", expected an object with at least "script"$/],
    [{}, 'script', /^spec\.script: missing$/],
    [{ scirpt: 'a.js' }, 'scirpt', /^spec\.scirpt: unknown field `scirpt`, expected one of `script`, `name`/],
    [{ script: '' }, 'script', /^spec\.script: must not be empty/],
    [{ script: 'a.js', name: 7 }, 'name', /^spec\.name: invalid type: integer `7`, expected a string/],
    [{ script: 'a.js', name: '' }, 'name', /^spec\.name: must not be empty/],
    [{ script: 'a.js', name: 'a|b' }, 'name', /^spec\.name: must not contain '\|'/],
    [{ script: 'a.js', args: ['ok', 3] }, 'args[1]', /^spec\.args\[1\]: invalid type: integer `3`, expected a string/],
    [{ script: 'a.js', env: { PORT: { n: 1 } } }, 'env.PORT', /^spec\.env\.PORT: invalid type: map, expected a string, number or boolean/],
    [{ script: 'a.js', env: { 'A=B': 'x' } }, 'env.A=B', /^spec\.env\.A=B: variable names must be non-empty/],
    [{ script: 'a.js', restartAt: [100, -1] }, 'restartAt[1]', /^spec\.restartAt\[1\]: invalid value: integer `-1`/],
    [{ script: 'a.js', killTimeout: 'soon' }, 'killTimeout', /^spec\.killTimeout: invalid type: string "soon"/],
    [{ script: 'a.js', restartOk: 1.5 }, 'restartOk', /^spec\.restartOk:/],
    [{ script: 'a.js', stripANSI: 'yes' }, 'stripANSI', /^spec\.stripANSI: invalid type: string "yes", expected a boolean/],
    [{ script: 'a.js', logKeep: 5000 }, 'logKeep', /^spec\.logKeep: keeps at most 1000 files/],
    [{ script: 'a.js', logMaxSize: 10 }, 'logMaxSize', /^spec\.logMaxSize: must be 0 \(never rotate\) or at least 4096 bytes/],
    [{ script: 'a.js', nodePath: ' ' }, 'nodePath', /^spec\.nodePath: must not be empty/],
    [{ script: 'a.js', cwd: '' }, 'cwd', /^spec\.cwd: must not be empty/],
    [{ script: 'a.js', cwd: path.join(dir.path, 'nope') }, 'cwd', /^spec\.cwd: folder does not exist: .*nope$/],
  ]
  for (const [spec, field, message] of cases) {
    await assert.rejects(m.start(spec), (err) => {
      assert.ok(err instanceof Error, `${JSON.stringify(spec)}: an Error`)
      assert.equal(err.code, 'bad_spec', `${JSON.stringify(spec)}: ${err.message}`)
      assert.equal(err.field, field, err.message)
      assert.equal(err.request, 'start')
      assert.match(err.message, message)
      return true
    }, JSON.stringify(spec))
  }
  assert.deepStrictEqual(await m.list(), [], 'nothing started')

  // A field that is null is not set, as in JavaScript.
  const row = await m.start({ ...service('nulls'), cwd: null, log: null, env: null, restartAt: null }, { wait: 'ready' })
  assert.equal(row.state, 'running')
  await m.stop('nulls')

  // Bad options are programming errors of another kind.
  await assert.rejects(m.start(service('x'), { wait: 'soon' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  await assert.rejects(m.start(service('x'), { timeout: -5 }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  await assert.rejects(m.stop(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  assert.deepStrictEqual((await m.list()).map((r) => [r.name, r.state]), [['nulls', 'stopped']])
})

test('events arrive in order, on "event" and by name; send() reaches the child and its reply comes back', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const seen = []
  const exited = []
  m.on('event', (e) => seen.push(e))
  m.on('exited', (e) => exited.push(e))

  const row = await m.start(service('e'), { wait: 'ready' })
  const data = { ping: [1, 'two', { three: null }], text: 'line\nbreak "quoted" \u2028' }
  assert.equal(await m.send('e', data), 1)
  const echo = await poll('the echo', () => seen.find((e) => e.event === 'message'))
  assert.deepStrictEqual(echo.data, { echo: data })
  assert.deepStrictEqual(byEvent(dir, 'e', 'message').map((e) => e.data), [data])
  await m.stop('e')
  await poll('the exited event', () => exited.length === 1)

  const mine = seen.filter((e) => e.name === 'e')
  assert.deepStrictEqual(mine.map((e) => e.event), ['started', 'ready', 'message', 'stopping', 'exited'])
  for (const e of mine) {
    assert.equal(e.type, 'event')
    assert.equal(e.pid, row.pid)
    assert.equal(e.service, row.id)
    assert.ok(!Number.isNaN(Date.parse(e.time)), e.time)
  }
  assert.equal(mine[3].reason, 'stop')
  assert.equal(exited[0], mine[4], 'the same object on "event" and on "exited"')
  assert.equal(exited[0].exit, 'exit code 0')
  assert.equal(exited[0].requested, true)
})

test('relative cwd and log resolve against process.cwd() at the time of start()', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  fs.mkdirSync(path.join(dir.path, 'first', 'svc'), { recursive: true })
  fs.mkdirSync(path.join(dir.path, 'second', 'svc'), { recursive: true })
  const here = process.cwd()
  try {
    // The supervisor starts while the cwd is `first`; the service starts while it is `second`.
    process.chdir(path.join(dir.path, 'first'))
    await m.start(service('warmup'))
    process.chdir(path.join(dir.path, 'second'))
    await m.start(service('rel', [], { cwd: 'svc', log: 'logs/rel.log' }), { wait: 'ready' })
  } finally {
    process.chdir(here)
  }
  const [started] = byEvent(dir, 'rel', 'started')
  assert.equal(started.cwd, path.join(dir.path, 'second', 'svc'))
  const log = path.join(dir.path, 'second', 'logs', 'rel.log')
  await poll(() => `${log} to get the service's lines`, () => dir.read(path.join('second', 'logs', 'rel.log')).includes('rel pm  | started pid'))
  assert.ok(!fs.existsSync(path.join(dir.path, 'first', 'logs')))
})

test('the supervisor runs under the manager\'s instance name, so the CLI can reach it', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager({ name: 'my-app_1.0' })
  assert.equal(m.name, 'my-app_1.0')
  await m.start(service('cli'), { wait: 'ready' })
  assert.ok(fs.existsSync(path.join(dir.path, 'rt', 'my-app_1.0.sock')))
  const r = spawnSync(SUPERVISOR, ['ls', '--json', '--instance', 'my-app_1.0'], { env: dir.env(), encoding: 'utf8', timeout: 20_000 })
  assert.equal(r.status, 0, r.stderr)
  assert.deepStrictEqual(JSON.parse(r.stdout).map((row) => [row.name, row.state]), [['cli', 'running']])
})

test('an instance name the supervisor refuses fails the first start with its error', async (t) => {
  const dir = new TestDir(t)
  for (const name of ['has space', '.hidden', '-x', 'a/b', '', 'x'.repeat(65)]) {
    const m = dir.manager({ name })
    await assert.rejects(m.start(service('x')), (err) => {
      assert.ok(err instanceof Error)
      assert.equal(err.code, 'bad_instance_name', err.message)
      // The supervisor's own words, which the manager does not repeat anywhere.
      assert.ok(err.message.includes(`${JSON.stringify(name)} is not an instance name`), err.message)
      return true
    }, JSON.stringify(name))
    assert.equal(m.pid, null)
  }
  // Not a string at all is a programming error of this process.
  assert.throws(() => dir.manager({ name: 5 }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  const rt = path.join(dir.path, 'rt')
  assert.deepStrictEqual(fs.existsSync(rt) ? fs.readdirSync(rt) : [], [], 'no runtime file for a refused name')
})

test('a supervisor that dies is reported by "close", its services end, and the next start runs a new one', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  const closed = []
  m.on('close', (c) => closed.push(c))
  const row = await m.start(service('s'), { wait: 'ready' })
  const first = m.pid
  process.kill(first, 'SIGKILL')
  await poll('the close event', () => closed.length === 1)
  assert.equal(closed[0].signal, 'SIGKILL')
  assert.equal(closed[0].expected, false)
  assert.equal(closed[0].error.code, 'supervisor_exited')
  assert.equal(m.pid, null)
  // The supervisor's sentinel stops its services (protocol.md section 7).
  await poll(() => `pid ${row.pid} to be stopped by the sentinel`, () => !alive(row.pid), 5000)
  await poll('the stop handler', () => byEvent(dir, 's', 'handler').length === 1)
  assert.deepStrictEqual(await m.list(), [])

  const again = await m.start(service('s'), { wait: 'ready' })
  assert.ok(m.pid !== null && m.pid !== first)
  assert.ok(alive(again.pid))
})

test('a missing supervisor binary is a clear error', async (t) => {
  const dir = new TestDir(t)
  const missing = path.join(dir.path, 'no', 'pm-supervisor')
  const m = dir.manager({ supervisorPath: missing })
  await assert.rejects(m.start(service('x')), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'supervisor_not_found')
    assert.ok(err.message.includes(`${missing} (the supervisorPath option): not found`), err.message)
    return true
  })
})

test('a second supervisor for the same instance name is refused with code "already_running"', async (t) => {
  const dir = new TestDir(t)
  const first = dir.manager({ name: 'app' })
  await first.start(service('one'), { wait: 'ready' })
  const second = dir.manager({ name: 'app' })
  const closed = []
  second.on('close', (c) => closed.push(c))
  await assert.rejects(second.start(service('two')), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'already_running', err.message)
    // The supervisor says who holds the instance (its fatal message); the manager reads no lock file.
    assert.ok(err.message.includes(`another pm-supervisor (pid ${first.pid}) is already running this instance`), err.message)
    return true
  })
  assert.deepStrictEqual([closed.length, closed[0].code, closed[0].error.code], [1, 3, 'already_running'])
  assert.equal(second.pid, null)
  assert.deepStrictEqual((await first.list()).map((r) => r.name), ['one'], 'the first one is untouched')
})
