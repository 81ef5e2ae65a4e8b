'use strict'
// The watchdog end to end (protocol.md sections 6.5 and 9.2): a service using the SDK, run by the
// real supervisor with `watchdogMs`, through the manager (pm-child/supervisor), which hands this
// test the supervisor's events. The services' output goes to the supervisor's stdout
// (manager.out), prefixed as in a log file.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')

const { FIXTURES, TestDir, poll, alive, requireSupervisor } = require('./support')

test.before(requireSupervisor)

const HANG = path.join(FIXTURES, 'hang.js')
const LIMIT = 1000
/** The supervisor notices a hang within the limit plus this (protocol.md section 6.5). */
const MARGIN = Math.max(LIMIT / 10, 50)
/** What a loaded 2-core machine may add to a verdict's timing; a correctness bound only. */
const LOAD_SLACK = 1000

/** A manager whose every event is kept, with the time this process saw it. */
function supervisor(dir) {
  const m = dir.manager()
  const events = []
  m.on('event', (e) => events.push(e))
  const find = (pred) => events.find(pred)
  const out = () => dir.read('manager.out')
  const describe = () => `\nevents: ${JSON.stringify(events)}\nmanager.out:\n${out().slice(-6000)}`
  return { m, events, find, out, describe }
}

test('a service whose event loop spins is found hung within watchdogMs plus the margin, its stack and report are in its log, and it is restarted', async (t) => {
  const dir = new TestDir(t)
  const s = supervisor(dir)
  const first = await s.m.start({ name: 'busy', script: HANG, args: ['busy'], watchdogMs: LIMIT, killTimeout: 1000, restartAt: [100] })
  const blocking = await dir.waitEvent('busy', 'blocking')
  const hung = await poll(() => `a hung event${s.describe()}`, () => s.find((e) => e.event === 'hung'))
  assert.equal(hung.pid, first.pid)
  assert.equal(hung.watchdog_ms, LIMIT)
  // The silence the supervisor saw: from the last heartbeat it got to its verdict.
  assert.ok(hung.silence_ms > LIMIT && hung.silence_ms <= LIMIT + MARGIN + LOAD_SLACK,
    `hung after ${hung.silence_ms} ms of silence, watchdogMs ${LIMIT}${s.describe()}`)
  // The same from the service's clock: its last heartbeat went out at most a period before it
  // began to spin.
  const sinceBlock = Date.parse(hung.time) - blocking.at
  assert.ok(sinceBlock > LIMIT - LIMIT / 3 && sinceBlock <= LIMIT + MARGIN + LOAD_SLACK,
    `hung ${sinceBlock} ms after the loop began to spin${s.describe()}`)
  t.diagnostic(`silence at the verdict: ${hung.silence_ms} ms (watchdogMs ${LIMIT}); ${sinceBlock} ms after the loop began to spin`)

  // Stopped with the stop sequence, then started again: a new process that runs.
  const restarted = await poll(() => `the restarted process${s.describe()}`,
    () => s.find((e) => e.event === 'started' && e.pid !== first.pid))
  await poll(() => `the new process to start its work${s.describe()}`,
    () => dir.events().some((e) => e.svc === 'busy' && e.event === 'started' && e.pid === restarted.pid))
  assert.ok(alive(restarted.pid), `the new process ${restarted.pid} runs`)
  assert.equal(alive(first.pid), false, 'the hung process is gone')
  const kinds = s.events.filter((e) => e.name === 'busy').map((e) => e.event)
  assert.deepStrictEqual(kinds.slice(kinds.indexOf('hung'), kinds.indexOf('hung') + 5),
    ['hung', 'stopping', 'exited', 'restarting', 'started'], s.describe())
  assert.equal(s.find((e) => e.event === 'stopping').reason, 'restart')
  assert.equal(s.find((e) => e.event === 'exited').requested, false, 'a hang counts as a crash')

  // The log: the verdict, and before the stop, the SDK's diagnostic: where the loop spins, and
  // Node's report of the hung process.
  const out = await poll(() => `the stop in the log${s.describe()}`, () => {
    const text = s.out()
    return text.includes(' busy pm  | stopping (restart requested') ? text : null
  })
  const lines = out.split('\n')
  const verdict = lines.findIndex((l) => l.endsWith(` busy pm  | hung: no heartbeat for ${hung.silence_ms} ms (watchdogMs ${LIMIT})`))
  assert.ok(verdict >= 0, `the hung line${s.describe()}`)
  assert.ok(lines[verdict + 1].endsWith(' busy pm  | it writes a diagnostic itself; stopping in 500 ms'), s.describe())
  const head = lines.findIndex((l) => l.endsWith(` busy err | pm-child: watchdog: no heartbeat for ${LIMIT} ms: the event loop is blocked, in JavaScript at:`))
  assert.ok(head >= 0, `the diagnostic${s.describe()}`)
  assert.match(lines[head + 1], / busy err \| {5}at spinForever \(.*hang\.js:\d+:\d+\)$/, 'the innermost frame is the spinning function')
  const prefix = ' busy err | pm-child: watchdog: diagnostic report (Node\'s process.report, without environment variables): '
  const reportLine = lines.find((l) => l.includes(prefix))
  assert.ok(reportLine, `the report${s.describe()}`)
  const report = JSON.parse(reportLine.slice(reportLine.indexOf(prefix) + prefix.length))
  assert.equal(report.header.processId, first.pid)
  const stop = lines.findIndex((l) => l.includes(' busy pm  | stopping (restart requested'))
  const reportAt = lines.indexOf(reportLine)
  assert.ok(stop > reportAt && stop > head, `the diagnostic is logged before the stop${s.describe()}`)

  const [row] = await s.m.list()
  assert.equal(row.hangs, 1, JSON.stringify(row))
  assert.equal(row.last_guard.why, 'hung', JSON.stringify(row))
  await s.m.shutdown()
})

test('a service busy under load, whose loop keeps turning, is never found hung', async (t) => {
  const dir = new TestDir(t)
  const s = supervisor(dir)
  const started = await s.m.start({ name: 'load', script: HANG, args: ['load'], watchdogMs: LIMIT, env: { LOAD_MS: '4000' } })
  const done = await poll(() => `the end of the load${s.describe()}`, () => s.find((e) => e.event === 'hung') ||
    dir.events().find((e) => e.svc === 'load' && e.event === 'load-done'))
  assert.equal(done.event, 'load-done', `found hung: ${JSON.stringify(done)}`)
  assert.ok(done.slices > 100, `it did work: ${done.slices} slices`)
  const [row] = await s.m.list()
  // (`hangs` and `last_guard` are left out of a row while there are none.)
  assert.equal(row.hangs ?? 0, 0, JSON.stringify(row))
  assert.equal(row.last_guard, undefined, JSON.stringify(row))
  assert.equal(row.watchdog_ms, LIMIT, JSON.stringify(row))
  assert.equal(row.pid, started.pid, 'the same process all along')
  await s.m.shutdown()
  const out = s.out()
  // Watched: its first heartbeat came within the limit (else `not watched` is logged).
  assert.ok(!out.includes('not watched'), out)
  assert.ok(!out.includes('hung'), out)
  assert.deepStrictEqual(s.events.filter((e) => ['hung', 'started'].includes(e.event)).map((e) => e.event), ['started'], s.describe())
})
