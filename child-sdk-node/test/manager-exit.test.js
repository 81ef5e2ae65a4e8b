'use strict'
// What happens to the services when the controlling process ends: SIGKILLed, SIGTERMed,
// process.exit, or simply done. The controller is fixtures/manager/controller.js, a separate
// process using the default manager as an app would.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { SERVICE, CHILD_PY, TestDir, poll, alive, requireSupervisor } = require('./support')

test.before(requireSupervisor)

const nodeService = (name) => ({ name, script: SERVICE, killTimeout: 5000 })

const byEvent = (dir, svc, kind) => dir.events().filter((e) => e.svc === svc && e.event === kind)

/** Waits for the controller's 'running' event (its services started); fails early if it died. */
function running(dir, ctl) {
  return poll(() => `the controller to run its services\nevents: ${JSON.stringify(dir.events())}\nstderr:\n${ctl.stderr()}`, () => {
    const failed = byEvent(dir, 'controller', 'failed')[0]
    if (failed) throw new Error(`the controller failed: ${JSON.stringify(failed)}\nstderr:\n${ctl.stderr()}`)
    if (!ctl.running()) throw new Error(`the controller exited early\nstderr:\n${ctl.stderr()}`)
    return byEvent(dir, 'controller', 'running')[0]
  })
}

test('SIGKILL of the controlling process: every service is stopped, its stop handler ran, nothing is left', async (t) => {
  const times = []
  const everything = []
  for (let run = 0; run < 5; run++) {
    const dir = new TestDir(t)
    const ctl = dir.controller({
      specs: [nodeService('n1'), nodeService('n2'), nodeService('n3'),
        { name: 'py', script: CHILD_PY, args: ['sigterm'], killTimeout: 5000 }],
      launched: true,
    })
    const { pids, supervisor } = await running(dir, ctl)
    assert.equal(pids.length, 4)
    // Started for real: the SDK services registered their stop handlers, the Python one its
    // SIGTERM handler.
    for (const svc of ['n1', 'n2', 'n3', 'py']) await dir.waitEvent(svc, 'started')

    ctl.signal('SIGKILL')
    const killed = Date.now()
    await poll(() => `every service to be gone; alive: ${pids.filter(alive)}`, () => pids.every((pid) => !alive(pid)))
    times.push(Date.now() - killed)
    await dir.waitAllGone()
    everything.push(Date.now() - killed)
    assert.deepStrictEqual(await ctl.wait(), { code: null, signal: 'SIGKILL' })
    // (Polled: a process in the middle of exiting has no environment left to carry the mark.)
    await poll('the supervisor to have exited', () => !alive(supervisor))

    for (const svc of ['n1', 'n2', 'n3']) {
      assert.equal(byEvent(dir, svc, 'handler').length, 1, `${svc}'s stop handler ran; events: ${JSON.stringify(dir.events())}`)
      assert.deepStrictEqual(byEvent(dir, svc, 'exit').map((e) => e.code), [0], `${svc} exited cleanly`)
    }
    assert.equal(byEvent(dir, 'py', 'sigterm').length, 1, 'the Python service got its SIGTERM')
    assert.equal(byEvent(dir, 'controller', 'onstopping').length, 0, 'a SIGKILLed process runs nothing')
  }
  // A service stops at once on `stop` (killTimeout is 5 s): this is the time the supervisor
  // takes to notice that its control channel closed and to stop everything.
  t.diagnostic(`controller SIGKILL -> last service gone (ms): ${times.join(', ')}`)
  t.diagnostic(`controller SIGKILL -> supervisor and sentinel gone too (ms): ${everything.join(', ')}`)
  for (const ms of times) assert.ok(ms < 5000, `${ms} ms: the services were stopped, not left to their 5 s killTimeout`)
})

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`${signal} to the controlling process: onstopping handlers run first, then the services stop, then it exits by ${signal}`, async (t) => {
    const dir = new TestDir(t)
    const ctl = dir.controller({ specs: [nodeService('a'), nodeService('b')] })
    const { pids, name, supervisor } = await running(dir, ctl)
    // The default instance name: the main script's name and a hash of its path.
    assert.match(name, /^controller-[0-9a-f]{8}$/)
    assert.ok(fs.existsSync(path.join(dir.path, 'rt', `${name}.sock`)), 'the supervisor runs under that name')

    ctl.signal(signal)
    assert.deepStrictEqual(await ctl.wait(), { code: null, signal }, ctl.stderr())
    // By the time it has exited, its services and its supervisor are gone.
    for (const pid of [...pids, supervisor]) assert.equal(alive(pid), false, `pid ${pid} is gone when the controller exits`)
    await dir.waitAllGone(2000)

    const events = dir.events()
    const at = (svc, kind) => events.findIndex((e) => e.svc === svc && e.event === kind)
    const onstopping = events[at('controller', 'onstopping')]
    const done = events[at('controller', 'onstopping-done')]
    assert.ok(onstopping && done, JSON.stringify(events))
    assert.deepStrictEqual(onstopping.alive, [true, true], 'the services still ran when the handler began')
    assert.deepStrictEqual(done.alive, [true, true], 'and when its Promise resolved: the handler was awaited first')
    for (const svc of ['a', 'b']) {
      assert.ok(at(svc, 'handler') > at('controller', 'onstopping-done'), `${svc} was stopped after the handler: ${JSON.stringify(events)}`)
      assert.deepStrictEqual(byEvent(dir, svc, 'exit').map((e) => e.code), [0])
    }
  })
}

test('a second signal during the stop ends the controlling process at once; the services still stop', async (t) => {
  const dir = new TestDir(t)
  const ctl = dir.controller({ specs: [nodeService('a')], handlerMs: 60_000 })
  const { pids } = await running(dir, ctl)
  ctl.signal('SIGINT')
  await dir.waitEvent('controller', 'onstopping')
  const second = Date.now()
  ctl.signal('SIGINT')
  assert.deepStrictEqual(await ctl.wait(), { code: null, signal: 'SIGINT' })
  assert.ok(Date.now() - second < 5000, 'not held by the 60 s handler')
  await poll('the service to be stopped', () => !alive(pids[0]))
  await dir.waitAllGone()
  assert.equal(byEvent(dir, 'a', 'handler').length, 1, 'its stop handler ran')
})

test('exitTimeout bounds a stop handler that hangs; the services still stop', async (t) => {
  const dir = new TestDir(t)
  const ctl = dir.controller({ specs: [nodeService('a')], handlerMs: 60_000, exitTimeout: 500 })
  const { pids } = await running(dir, ctl)
  const signalled = Date.now()
  ctl.signal('SIGTERM')
  assert.deepStrictEqual(await ctl.wait(), { code: null, signal: 'SIGTERM' })
  const took = Date.now() - signalled
  assert.ok(took >= 500 && took < 10_000, `exited ${took} ms after SIGTERM (exitTimeout 500 ms)`)
  assert.equal(byEvent(dir, 'controller', 'onstopping-done').length, 0)
  await poll('the service to be stopped', () => !alive(pids[0]))
  await dir.waitAllGone()
  assert.equal(byEvent(dir, 'a', 'handler').length, 1)
})

test('process.exit() in the controlling process: onstopping handlers are called, then the supervisor stops the services', async (t) => {
  const dir = new TestDir(t)
  const ctl = dir.controller({ specs: [nodeService('a')], after: 'exit' })
  assert.deepStrictEqual(await ctl.wait(), { code: 0, signal: null }, ctl.stderr())
  const [{ pids }] = byEvent(dir, 'controller', 'running')
  const events = dir.events()
  const onstopping = events.findIndex((e) => e.event === 'onstopping')
  assert.ok(onstopping !== -1, `the handler was called: ${JSON.stringify(events)}`)
  assert.deepStrictEqual(events[onstopping].alive, [true])
  assert.ok(onstopping < events.findIndex((e) => e.svc === 'controller' && e.event === 'exit'), 'before the process ended')
  // Synchronous: what the handler awaited did not happen.
  assert.equal(byEvent(dir, 'controller', 'onstopping-done').length, 0)
  await poll('the service to be stopped', () => !alive(pids[0]))
  await dir.waitAllGone()
  assert.equal(byEvent(dir, 'a', 'handler').length, 1, 'its stop handler ran')
})

test('unref(): a controller with nothing else to do exits by itself, and its services are stopped', async (t) => {
  const dir = new TestDir(t)
  const ctl = dir.controller({ specs: [nodeService('a')], after: 'unref' })
  assert.deepStrictEqual(await ctl.wait(), { code: 0, signal: null }, ctl.stderr())
  const [{ pids }] = byEvent(dir, 'controller', 'running')
  assert.equal(byEvent(dir, 'controller', 'onstopping').length, 1)
  await poll('the service to be stopped', () => !alive(pids[0]))
  await dir.waitAllGone()
  assert.equal(byEvent(dir, 'a', 'handler').length, 1)
})
