'use strict'
// The SDK under the real supervisor (`pm-supervisor run services.json`).

const test = require('node:test')
const assert = require('node:assert/strict')
const { CHILD, CHILD_ESM, TestDir, poll, alive, pmLines, requireSupervisor, stoppedLine } = require('./support')

test.before(requireSupervisor)

/** Starts a supervisor running one service `name` = the fixture in `mode`. */
function supervise(dir, name, mode, extra = {}, env = {}) {
  const config = dir.config([{ name, script: CHILD, args: [mode], killTimeout: 5000, ...extra }])
  return dir.run(config, env)
}

function handlers(dir, svc) {
  return dir.events().filter((e) => e.svc === svc && e.event === 'handler')
}

/** SIGTERMs the supervisor (it sends `stop`, reason shutdown) and checks it exits 0. */
async function shutdown(sup) {
  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, `supervisor output:\n${sup.stdout()}\n${sup.stderr()}`)
  return sup.stdout()
}

test('hello is sent, handlers run on stop in order, and the child exits 0 long before killTimeout, without signals', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'n', 'handlers', {}, { PM_LOG: 'debug' })
  const started = await dir.waitEvent('n', 'started')
  assert.equal(started.supervised, true)
  await sup.waitStdout('n pm  | ready')
  const out = await shutdown(sup)
  assert.deepStrictEqual(handlers(dir, 'n').map((e) => e.n), [1, 2])
  assert.equal((await dir.waitEvent('n', 'exit')).code, 0)
  const stopped = stoppedLine(out, 'n')
  assert.ok(stopped, out)
  assert.equal(stopped.exit, 'exit code 0', stopped.line)
  assert.ok(stopped.ms < 1000, `stopped ${stopped.ms} ms after the stop request, killTimeout is 5000: ${stopped.line}`)
  assert.ok(!out.includes('SIGTERM sent') && !out.includes('SIGKILL sent'), out)
  // The supervisor logs the child's hello at debug level.
  const { version } = require('../package.json')
  assert.ok(sup.stderr().includes(`hello service=n sdk="pm-child-node" version="${version}"`), sup.stderr())
  t.diagnostic(`stop request to exit: ${stopped.ms} ms`)
})

test('ready reaches the supervisor', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'r', 'handlers')
  await dir.waitEvent('r', 'started')
  const out = await sup.waitStdout('r pm  | ready')
  assert.equal(pmLines(out, 'r').filter((l) => l.endsWith('| ready')).length, 1)
})

test('a Promise-returning handler is awaited before the next handler and before exit', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'a', 'async')
  await dir.waitEvent('a', 'started')
  const out = await shutdown(sup)
  assert.deepStrictEqual(handlers(dir, 'a').map((e) => [e.n, e.phase]),
    [[1, 'start'], [1, 'end'], [2, undefined]])
  assert.equal((await dir.waitEvent('a', 'exit')).code, 0)
  const stopped = stoppedLine(out, 'a')
  assert.equal(stopped.exit, 'exit code 0', out)
  assert.ok(stopped.ms >= 300, `the 300 ms handler was waited for: ${stopped.line}`)
  assert.ok(!out.includes('SIGTERM sent') && !out.includes('SIGKILL sent'), out)
})

test('a failing handler is reported on stderr and the next ones still run', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'f', 'failing')
  await dir.waitEvent('f', 'started')
  const out = await shutdown(sup)
  assert.match(out, / f err \| pm-child: stop handler #1 failed: handler one fails on purpose\n/)
  assert.match(out, / f err \| pm-child: stop handler #2 failed: handler two rejects on purpose\n/)
  assert.deepStrictEqual(handlers(dir, 'f').map((e) => e.n), [3])
  assert.equal(stoppedLine(out, 'f').exit, 'exit code 0', out)
})

test('handlers run when the supervisor is SIGKILLed, and send() then returns false instead of throwing', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'k', 'quick')
  const { pid } = await dir.waitEvent('k', 'started')
  await sup.waitStdout('k pm  | ready')
  sup.signal('SIGKILL')
  await sup.wait()
  const [h] = await poll(() => `the handler after the supervisor's death; events: ${JSON.stringify(dir.events())}`,
    () => (handlers(dir, 'k').length > 0 ? handlers(dir, 'k') : undefined))
  assert.equal(h.sent, false)
  assert.equal(h.connected, false)
  // It exited by itself, cleanly, before the sentinel's SIGKILL (800 ms at most).
  assert.equal((await dir.waitEvent('k', 'exit')).code, 0)
  await poll(`pid ${pid} to be gone`, () => !alive(pid))
  await dir.waitAllGone()
})

test('a grandchild does not inherit fd 3, and Node\'s channel variables are gone', async (t) => {
  const dir = new TestDir(t)
  supervise(dir, 'g', 'grandchild')
  const e = await dir.waitEvent('g', 'grandchild')
  // The fixture really had a channel, and the supervisor's variables, before the SDK's first call.
  assert.equal(e.before.channel, true)
  assert.equal(e.before.PM_CHANNEL_FD, '3')
  assert.equal(e.status, 0)
  // Node consumed NODE_CHANNEL_*; PM_CHANNEL_FD stays (the SDK changes no variable), and cannot
  // mislead a descendant: its fd 3, if any, is not the socket PM_CHANNEL_ID names.
  assert.deepStrictEqual(e.lines, ['closed', '3||'])
})

test('a child whose work is done exits by itself although the SDK is connected', async (t) => {
  const dir = new TestDir(t)
  const sup = supervise(dir, 'd', 'done')
  assert.equal((await dir.waitEvent('d', 'started')).supervised, true)
  const out = await sup.waitStdout('d pm  | exited: exit code 0 after')
  assert.ok(sup.running(), 'the supervisor keeps running')
  assert.ok(!pmLines(out, 'd').some((l) => l.includes('stopping')), `no stop was requested:\n${out}`)
  assert.deepStrictEqual(dir.events().filter((e) => e.svc === 'd').map((e) => e.event),
    ['started', 'work-done', 'exit'], 'no stop handler ran')
  await shutdown(sup)
})

test('the application\'s own process.on(\'message\') keeps it alive, as under a plain fork; the SDK\'s listeners do not', async (t) => {
  const dir = new TestDir(t)
  const m = dir.manager()
  t.after(() => m.shutdown())
  await m.start({ name: 'a', script: CHILD, args: ['app-listener'], killTimeout: 5000, restartAt: [] }, { wait: 'ready' })
  const exited = new Promise((resolve) => m.on('exited', resolve))
  // Nothing but its channel holds it: a child with only the SDK's listeners ends by itself
  // (the 'done' case above). This one is still there a while later to take 'bye'.
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.equal(await m.send('a', 'bye'), 1)
  const e = await exited
  assert.equal(e.exit, 'exit code 3', 'it exited on bye, not by itself')
  assert.deepStrictEqual(dir.events().filter((ev) => ev.event === 'app-message').map((ev) => ev.data), ['bye'])
  assert.deepStrictEqual(dir.events().filter((ev) => ev.event === 'message').map((ev) => ev.data), ['bye'])
})

test('ESM: default and named imports of pm-child work under the supervisor', async (t) => {
  const dir = new TestDir(t)
  const sup = dir.run(dir.config([{ name: 'm', script: CHILD_ESM, killTimeout: 5000 }]))
  const started = await dir.waitEvent('m', 'started')
  assert.deepStrictEqual([started.supervised, started.sameFunctions], [true, true])
  await sup.waitStdout('m pm  | ready')
  const out = await shutdown(sup)
  assert.deepStrictEqual(handlers(dir, 'm').map((e) => e.n), [1, 2])
  assert.equal(stoppedLine(out, 'm').exit, 'exit code 0', out)
  assert.ok(!out.includes('SIGTERM sent'), out)
})

test('stop latency of a Node SDK child, five runs', async (t) => {
  const dir = new TestDir(t)
  const times = []
  for (let i = 0; i < 5; i++) {
    const sup = supervise(dir, `l${i}`, 'handlers')
    await sup.waitStdout(`l${i} pm  | ready`)
    const out = await shutdown(sup)
    const stopped = stoppedLine(out, `l${i}`)
    assert.equal(stopped.exit, 'exit code 0', out)
    times.push(stopped.ms)
  }
  t.diagnostic(`stop request to exit (ms): ${times.join(', ')}`)
  // An SDK child answers `stopping` at once; its handlers here take no time.
  assert.ok(Math.max(...times) < 1000, `${times}`)
})
