'use strict'
// Signal handlers coexist (protocol.md section 9): the application's own
// process.on('SIGTERM') listeners, added before or after the SDK's first stop handler (or with
// process.once), keep working, the SDK's handlers still run, and the process ends when the
// application's own shutdown is done: the SDK does not exit(0) under it.
//
// Standalone, a SIGTERM reaches every listener at once (Node's rule), so the application's
// shutdown and the stop handlers run side by side. Under pm, the stop is a message: the SDK runs
// its handlers first, then calls the application's SIGTERM listeners once, as the SIGTERM
// pm would otherwise have sent.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, TestDir, requireSupervisor, stoppedLine } = require('./support')

test.before(requireSupervisor)

function steps(dir) {
  return dir.events()
    .filter((e) => !['started', 'listeners'].includes(e.event))
    .map((e) => (e.event === 'handler' ? `handler-${e.phase}` : e.event))
}

for (const mode of ['app-first', 'app-after', 'app-once']) {
  test(`standalone, ${mode}: SIGTERM runs the application's listener once and the stop handler, and the application ends the process`, async (t) => {
    const dir = new TestDir(t)
    const child = dir.spawn('child', process.execPath, [CHILD, mode])
    await dir.waitEvent('alone', 'started')
    child.signal('SIGTERM')
    assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
    const s = steps(dir)
    // Side by side: the handler (100 ms) ends before the application's shutdown (300 ms), which
    // is not cut short by an exit(0) of the SDK.
    assert.deepStrictEqual(s.filter((k) => k.startsWith('handler')), ['handler-start', 'handler-end'], s.join())
    assert.deepStrictEqual(s.filter((k) => k.startsWith('app')), ['app-sigterm', 'app-drained'], s.join())
    assert.equal(s.at(-1), 'exit', s.join())
    assert.ok(s.indexOf('app-sigterm') < s.indexOf('handler-end'), `both start at the signal: ${s}`)
    assert.equal(child.stderr(), '')
  })

  test(`under pm, ${mode}: the stop runs the handler, then the application's SIGTERM listener once, and the application ends the process`, async (t) => {
    const dir = new TestDir(t)
    const sup = dir.run(dir.config([{ name: 'c', script: CHILD, args: [mode], killTimeout: 5000 }]))
    await sup.waitStdout('c pm  | ready')
    sup.signal('SIGTERM')
    assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
    const out = sup.stdout()
    assert.deepStrictEqual(steps(dir), ['handler-start', 'handler-end', 'app-sigterm', 'app-drained', 'exit'])
    const stopped = stoppedLine(out, 'c')
    assert.equal(stopped.exit, 'exit code 0', stopped.line)
    assert.ok(stopped.ms >= 400, `the handler's 100 ms, then the application's 300 ms: ${stopped.line}`)
    assert.ok(!/SIG(TERM|KILL) sent/.test(out), out)
    t.diagnostic(`stop request to exit: ${stopped.ms} ms`)
  })
}

test('under pm, the stop of an application that handles only SIGINT (Ctrl-C) goes to its SIGINT listener', async (t) => {
  const dir = new TestDir(t)
  const sup = dir.run(dir.config([{ name: 'c', script: CHILD, args: ['app-sigint'], killTimeout: 5000 }]))
  await sup.waitStdout('c pm  | ready')
  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
  assert.deepStrictEqual(steps(dir), ['handler-start', 'handler-end', 'app-sigint', 'app-drained', 'exit'])
})

test('standalone, a second SIGTERM during the application\'s shutdown reaches its listener again and does not restart the stop', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'app-first'])
  await dir.waitEvent('alone', 'started')
  child.signal('SIGTERM')
  await dir.waitEvent('alone', 'app-sigterm')
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  const s = steps(dir)
  assert.deepStrictEqual(s.filter((k) => k.startsWith('handler')), ['handler-start', 'handler-end'], s.join())
  assert.equal(s.filter((k) => k === 'app-sigterm').length, 2, s.join())
  assert.equal(s.at(-1), 'exit', s.join())
  assert.ok(s.indexOf('app-drained') > s.indexOf('handler-end'), `the application's shutdown ran to its end: ${s}`)
})
