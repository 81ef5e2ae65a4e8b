'use strict'
// The SDK without a supervisor (`node child.js` run directly): SIGTERM and SIGINT still run the
// stop handlers, as under systemd, Docker or a terminal's Ctrl-C.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, TestDir, alive, poll, requireSupervisor, stoppedLine } = require('./support')

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`without a supervisor, ${signal} runs the handlers in order and the child exits 0`, async (t) => {
    const dir = new TestDir(t)
    const child = dir.spawn('child', process.execPath, [CHILD, 'async'])
    const started = await dir.waitEvent('alone', 'started')
    assert.equal(started.supervised, false)
    child.signal(signal)
    assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
    const ran = dir.events().filter((e) => e.event === 'handler').map((e) => [e.n, e.phase])
    assert.deepStrictEqual(ran, [[1, 'start'], [1, 'end'], [2, undefined]])
    assert.equal(child.stderr(), '')
  })
}

test('a second signal during the stop does not run the handlers again', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'async'])
  await dir.waitEvent('alone', 'started')
  child.signal('SIGTERM')
  await dir.waitEvent('alone', 'handler')
  // The first handler is in its 300 ms wait now.
  child.signal('SIGINT')
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  const ran = dir.events().filter((e) => e.event === 'handler').map((e) => [e.n, e.phase])
  assert.deepStrictEqual(ran, [[1, 'start'], [1, 'end'], [2, undefined]])
})

// Standalone = supervised for the service's own processes: under pm, what is left of the
// service's process group is SIGKILLed when its main process exits; standalone, the SDK sends
// SIGTERM to its group as a stop ends the process, if the process leads its group (as under
// systemd, Docker, or a shell's job control).
test('without a supervisor, the processes the service started in its group end with it after a stop', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'children'])
  const sub = await dir.waitEvent('alone', 'sub')
  assert.ok(alive(sub.pid))
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  await poll(`the sub-process ${sub.pid} to be gone`, () => !alive(sub.pid), 5000)
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler').map((e) => e.n), [1])
})

test('under pm, the same service\'s process group is gone after the stop too', async (t) => {
  requireSupervisor()
  const dir = new TestDir(t)
  const sup = dir.run(dir.config([{ name: 'c', script: CHILD, args: ['children'], killTimeout: 5000 }]))
  const sub = await dir.waitEvent('c', 'sub')
  await sup.waitStdout('c pm  | ready')
  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
  assert.equal(stoppedLine(sup.stdout(), 'c').exit, 'exit code 0')
  await poll(`the sub-process ${sub.pid} to be gone`, () => !alive(sub.pid), 5000)
})
