'use strict'
// The application decides when it exits (protocol.md section 9): a main flow that waits for
// the stop with pm.stopRequested() / pm.handlersDone() finishes its own shutdown and the
// process ends when it is done, never by an exit(0) of the SDK in between; and when the
// application's work ends while a stop handler still runs, the handler is not cut short.
// Each case under the real supervisor and standalone (SIGTERM, as systemd or Docker send it).

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')

const { CHILD, FIXTURES, TestDir, poll, requireSupervisor, stoppedLine } = require('./support')

test.before(requireSupervisor)

function kinds(dir) {
  return dir.events().map((e) => e.event).filter((k) => k !== 'listeners')
}

/** Runs CHILD `mode` under pm (stopped by the supervisor's shutdown) or standalone (SIGTERM). */
async function stopChild(t, dir, mode, how) {
  if (how === 'pm') {
    const sup = dir.run(dir.config([{ name: 'c', script: CHILD, args: [mode], killTimeout: 5000 }]))
    await sup.waitStdout('c pm  | ready')
    sup.signal('SIGTERM')
    assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
    const out = sup.stdout()
    const stopped = stoppedLine(out, 'c')
    // SIGKILL never. (A SIGTERM may come if the `stopping` answer misses the supervisor's 50 ms
    // window on a loaded machine; the outcome is the same.)
    assert.ok(!out.includes('SIGKILL sent'), out)
    t.diagnostic(`stop request to exit: ${stopped.ms} ms`)
    return stopped.exit
  }
  const child = dir.spawn('child', process.execPath, [CHILD, mode])
  await dir.waitEvent('alone', 'started')
  const t0 = Date.now()
  child.signal('SIGTERM')
  const { code, signal } = await child.wait()
  t.diagnostic(`SIGTERM to exit: ${Date.now() - t0} ms`)
  assert.equal(child.stderr(), '')
  return signal ? `signal ${signal}` : `exit code ${code}`
}

for (const how of ['pm', 'standalone']) {
  test(`${how}: a main flow waiting on stopRequested() and handlersDone() finishes its shutdown, then the process ends by itself`, async (t) => {
    const dir = new TestDir(t)
    assert.equal(await stopChild(t, dir, 'waits', how), 'exit code 0')
    const k = kinds(dir)
    // The handler ran before handlersDone() resolved; the main flow's 300 ms after it ran to the
    // end, and only then did the process exit.
    assert.ok(k.indexOf('handler') < k.indexOf('handlers-done'), k.join())
    assert.deepStrictEqual(k.slice(-2), ['main-done', 'exit'], k.join())
    assert.ok(k.includes('stop-requested'), k.join())
  })

  test(`${how}: when the application's work ends while a stop handler still runs, the handler finishes`, async (t) => {
    const dir = new TestDir(t)
    assert.equal(await stopChild(t, dir, 'reverse', how), 'exit code 0')
    const ran = dir.events().filter((e) => e.event === 'handler').map((e) => e.phase)
    assert.deepStrictEqual(ran, ['start', 'end'])
    assert.equal(kinds(dir).at(-1), 'exit')
  })
}

test('stopRequested() alone installs the signal hooks, as a stop handler does, and resolves on SIGINT', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'wait-only'])
  const l = await dir.waitEvent('alone', 'listeners')
  assert.deepStrictEqual([l.SIGTERM, l.SIGINT], [1, 1])
  child.signal('SIGINT')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  assert.deepStrictEqual(kinds(dir), ['started', 'stop-requested', 'exit'])
})

test('under pm, a stop goes to the application\'s wait rather than to its own SIGTERM listener', async (t) => {
  const dir = new TestDir(t)
  const sup = dir.run(dir.config([{ name: 'c', script: CHILD, args: ['waits', 'sigterm'], killTimeout: 5000 }]))
  await sup.waitStdout('c pm  | ready')
  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
  const k = kinds(dir)
  assert.deepStrictEqual(k.slice(-2), ['main-done', 'exit'], k.join())
  assert.ok(!k.includes('app-sigterm'), k.join())
})

for (const how of ['pm', 'standalone']) {
  test(`${how}: the plain worker script finishes the job in progress and saves its results before it exits`, async (t) => {
    const dir = new TestDir(t)
    const script = path.join(FIXTURES, 'worker-script.js')
    const svc = how === 'pm' ? 's' : 'alone'
    const proc = how === 'pm'
      ? dir.run(dir.config([{ name: 's', script, killTimeout: 5000 }]))
      : dir.spawn('script', process.execPath, [script])
    // In the middle of the second job.
    await dir.waitEvent(svc, 'job-end')
    await poll('the second job to start', () => dir.events().some((e) => e.event === 'job-start' && e.job === 2))
    const t0 = Date.now()
    proc.signal('SIGTERM')
    assert.deepStrictEqual(await proc.wait(), { code: 0, signal: null }, `${proc.stdout()}\n${proc.stderr()}`)
    let ms = Date.now() - t0
    if (how === 'pm') {
      const stopped = stoppedLine(proc.stdout(), 's')
      assert.equal(stopped.exit, 'exit code 0', stopped.line)
      assert.ok(!proc.stdout().includes('SIGKILL sent'), proc.stdout())
      ms = stopped.ms
    }
    const k = dir.events().map((e) => (e.job ? `${e.event} ${e.job}` : e.event))
    const started = k.filter((e) => e.startsWith('job-start')).length
    assert.ok(started >= 2, k.join())
    assert.deepStrictEqual(k.slice(-3), [`job-end ${started}`, 'saved', 'exit'], k.join())
    assert.equal(dir.events().at(-1).code, 0)
    t.diagnostic(`${how}: stop request to exit ${ms} ms (a job of 300 ms was in progress)`)
  })
}
