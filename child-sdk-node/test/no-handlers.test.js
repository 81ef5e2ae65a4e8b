'use strict'
// No handlers, no change (protocol.md section 9): a service that uses the SDK only for `ready`,
// `send`, `onmessage` or `supervised` stops exactly as it would without the SDK. The SDK adds no
// signal listener, answers pm's `stop` with `term` (the supervisor then SIGTERMs the process
// group at once), and when the supervisor dies it SIGTERMs its own process group, as pm's
// sentinel does for a program without the SDK.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, TestDir, alive, poll, pmLines, requireSupervisor, stoppedLine } = require('./support')

test.before(requireSupervisor)

function supervise(dir, name, args) {
  return dir.run(dir.config([{ name, script: CHILD, args, killTimeout: 5000 }]))
}

function kinds(dir, svc) {
  return dir.events().filter((e) => e.svc === svc).map((e) => e.event)
}

/**
 * The application's SIGTERM handling ran its 300 ms to the end and the process then ended by
 * itself with code 0; its sub-process, in its process group, got SIGTERM too (at the same time
 * as the application, hence in no particular order with it).
 */
function assertAppShutdown(dir, svc) {
  const k = kinds(dir, svc).filter((e) => e !== 'listeners' && e !== 'sub-exit')
  assert.deepStrictEqual(k, ['sub', 'started', 'app-sigterm', 'app-drained', 'exit'], JSON.stringify(dir.events()))
  assert.equal(dir.events().find((e) => e.event === 'exit').code, 0)
  const sub = dir.events().filter((e) => e.event === 'sub-exit')
  assert.deepStrictEqual(sub.map((e) => e.signal), ['SIGTERM'])
}

test('the SDK adds no SIGTERM or SIGINT listener until a stop handler is registered', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'p', ['plain'])
  await sup.waitStdout('p pm  | ready')
  const l = await dir.waitEvent('p', 'listeners')
  assert.deepStrictEqual([l.SIGTERM, l.SIGINT], [0, 0])
  sup.signal('SIGTERM')
  await sup.wait()
})

test('under pm, a stop with no handlers is SIGTERM, and SIGTERM\'s default action ends the process', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'p', ['plain'])
  assert.equal((await dir.waitEvent('p', 'started')).supervised, true)
  await sup.waitStdout('p pm  | ready')
  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
  const out = sup.stdout()
  assert.ok(pmLines(out, 'p').some((l) => l.includes('SIGTERM sent') && l.includes('it has no stop handlers and asked for it')), out)
  const stopped = stoppedLine(out, 'p')
  assert.equal(stopped.exit, 'signal SIGTERM', stopped.line)
  // Well before the 50 ms acknowledgement window would have run out, let alone killTimeout.
  assert.ok(stopped.ms < 1000, stopped.line)
  assert.ok(!kinds(dir, 'p').includes('exit'), 'no exit(0) from the SDK')
  t.diagnostic(`stop request to exit: ${stopped.ms} ms`)
})

test('under pm, a stop with no handlers reaches the application\'s own SIGTERM handling, and the whole process group gets it', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 's', ['plain-sigterm', 'sub'])
  await sup.waitStdout('s pm  | ready')
  const listeners = await dir.waitEvent('s', 'listeners')
  assert.deepStrictEqual([listeners.SIGTERM, listeners.SIGINT], [1, 0], 'only the application\'s listener')
  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
  const out = sup.stdout()
  // The application's 300 ms of shutdown work ran to its end, then the process ended by itself.
  assertAppShutdown(dir, 's')
  const stopped = stoppedLine(out, 's')
  assert.equal(stopped.exit, 'exit code 0', stopped.line)
  assert.ok(stopped.ms >= 300, stopped.line)
  assert.ok(!out.includes('SIGKILL sent'), out)
  t.diagnostic(`stop request to exit: ${stopped.ms} ms`)
})

test('when the supervisor dies, a child with no handlers SIGTERMs its own process group, as the sentinel does for a plain program', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'k', ['plain-sigterm', 'sub'])
  const { pid } = await dir.waitEvent('k', 'started')
  const sub = await dir.waitEvent('k', 'sub')
  await sup.waitStdout('k pm  | ready')
  sup.signal('SIGKILL')
  await sup.wait()
  // The application's own SIGTERM handling ran to its end (300 ms, within the sentinel's 800 ms).
  await dir.waitEvent('k', 'exit')
  assertAppShutdown(dir, 'k')
  await poll(`pids ${pid} and ${sub.pid} to be gone`, () => !alive(pid) && !alive(sub.pid))
  await dir.waitAllGone()
})

test('standalone, a child with no handlers dies of SIGTERM\'s default action, as without the SDK', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'plain'])
  const listeners = await dir.waitEvent('alone', 'listeners')
  assert.deepStrictEqual([listeners.SIGTERM, listeners.SIGINT], [0, 0])
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: null, signal: 'SIGTERM' })
})

test('standalone, Ctrl-C (SIGINT) to a child with no handlers is SIGINT\'s default action', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'plain'])
  await dir.waitEvent('alone', 'listeners')
  child.signal('SIGINT')
  assert.deepStrictEqual(await child.wait(), { code: null, signal: 'SIGINT' })
})

test('standalone, a child with no handlers and SIGTERM handling of its own stops as its handling says', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'plain-sigterm'])
  await dir.waitEvent('alone', 'listeners')
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  assert.deepStrictEqual(kinds(dir, 'alone').filter((k) => k !== 'listeners'), ['started', 'app-sigterm', 'app-drained', 'exit'])
})
