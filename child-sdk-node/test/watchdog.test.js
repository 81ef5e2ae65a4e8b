'use strict'
// The watchdog's heartbeats (protocol.md sections 5 and 9.2), with a Node parent standing in for
// the supervisor: it starts the fixture as pm starts a Node service (Node's IPC channel on
// fd 3, PM_CHANNEL_ID naming it, PM_WATCHDOG_MS), notes when each heartbeat arrives, and tells
// the fixture when to block its event loop.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')

const { FIXTURES, PACKAGE, TestDir, poll, httpGet } = require('./support')

const FIXTURE = path.join(FIXTURES, 'watchdog.js')
const SELF_CHANNEL = path.join(FIXTURES, 'self-channel.js')
const LIMIT = 600
const PERIOD = LIMIT / 3

/** Starts the fixture in `mode` with a channel and `env`; notes every pm message it sends. */
function service(dir, mode, { env = {}, preloadSdk = false } = {}) {
  const args = ['-r', SELF_CHANNEL, ...(preloadSdk ? ['-r', PACKAGE] : []), FIXTURE, mode]
  const proc = dir.spawn('service', process.execPath, args, { ipc: true, env: { PM_CHANNEL_FD: '3', ...env } })
  const messages = []
  // pm's messages and data, in the order of the wire (Node keeps it across both events).
  const wire = []
  proc.child.on('internalMessage', (m) => { messages.push({ at: Date.now(), m }); wire.push(m) })
  proc.child.on('message', (m) => wire.push(m))
  proc.child.on('error', () => {})
  const beats = () => messages.filter((x) => x.m.type === 'heartbeat').map((x) => x.at)
  const describe = () => `\nmessages: ${JSON.stringify(messages.map((x) => x.m.type))}\nstderr:\n${proc.stderr().slice(0, 3000)}`
  return {
    proc,
    messages,
    wire,
    beats,
    describe,
    hello: () => poll(() => `hello${describe()}`, () => messages.find((x) => x.m.type === 'hello')).then((x) => x.m),
    /** Waits until `n` heartbeats have come; returns their arrival times. */
    beatsUntil: (n) => poll(() => `${n} heartbeats${describe()}`, () => beats().length >= n && beats()),
    send: (data) => proc.child.send(data),
  }
}

/** The gaps between consecutive times. */
const gaps = (times) => times.slice(1).map((t, i) => t - times[i])

test('with PM_WATCHDOG_MS the event loop sends a heartbeat every third of it, from the SDK\'s loading on; hello announces its own diagnostic', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'sdk', { env: { PM_WATCHDOG_MS: String(LIMIT) } })
  const { version } = require('../package.json')
  assert.deepStrictEqual(await s.hello(),
    { cmd: 'NODE_PM', type: 'hello', protocol: 2, sdk: 'pm-child-node', version, diagnostics: 'self' })
  const times = await s.beatsUntil(12)
  // The first heartbeat right after hello (the fixture made no call), then one per period.
  assert.equal(s.messages[1].m.type, 'heartbeat', s.describe())
  const g = gaps(times)
  const mean = g.reduce((a, b) => a + b, 0) / g.length
  assert.ok(mean >= PERIOD * 0.8 && mean <= PERIOD * 1.5, `mean gap ${mean} ms, period ${PERIOD} ms: ${g}`)
  assert.ok(Math.max(...g) < LIMIT, `a gap of ${Math.max(...g)} ms reached the limit: ${g}`)
  assert.equal(s.proc.stderr(), '', 'a healthy loop gets no diagnostic')
})

test('without PM_WATCHDOG_MS (or with a value that is not one), no heartbeat and no diagnostic thread', async (t) => {
  for (const env of [{}, { PM_WATCHDOG_MS: '1e3' }, { PM_WATCHDOG_MS: '0' }]) {
    const dir = new TestDir(t)
    const s = service(dir, 'sdk', { env })
    s.send({ beat: 1 }) // heartbeat() does nothing either
    await poll(() => `the beat command${s.describe()}`, () => dir.events().find((e) => e.event === 'beat'))
    const hello = await s.hello()
    assert.equal('diagnostics' in hello, false, JSON.stringify(hello))
    // A bounded wait for something that must not happen: 3 periods of the watchdog that is not set.
    await new Promise((resolve) => setTimeout(resolve, 3 * PERIOD))
    assert.deepStrictEqual(s.beats(), [], `${JSON.stringify(env)}${s.describe()}`)
    assert.equal(s.proc.stderr(), '')
  }
})

/** Blocks the loop for `ms` by `how`; returns the beats' arrival times and the block's bounds. */
async function blockAndWatch(s, dir, ms, how) {
  await s.beatsUntil(3)
  s.send({ block: ms, how })
  const unblocked = await poll(() => `the loop to unblock${s.describe()}`, () => dir.events().find((e) => e.event === 'unblocked'))
  const blocking = dir.events().find((e) => e.event === 'blocking')
  // Two more heartbeats after the block: the loop turns again.
  const n = s.beats().filter((at) => at > unblocked.at).length
  const times = await s.beatsUntil(s.beats().length - n + 2)
  return { times, from: blocking.at, to: unblocked.at }
}

for (const how of ['busy', 'atomics', 'sync']) {
  test(`a loop blocked (${how}) sends no heartbeat until it turns again`, async (t) => {
    const dir = new TestDir(t)
    const s = service(dir, 'sdk', { env: { PM_WATCHDOG_MS: String(LIMIT) } })
    const block = 4 * LIMIT
    const { times, from, to } = await blockAndWatch(s, dir, block, how)
    const during = times.filter((at) => at > from + 50 && at < to)
    assert.deepStrictEqual(during, [], `heartbeats while the loop was blocked from ${from} to ${to}${s.describe()}`)
    assert.ok(Math.max(...gaps(times)) >= block - 50, `the longest gap covers the block: ${gaps(times)}`)
  })
}

test('a loop busy in JavaScript: the watcher thread gets its stack and Node\'s report on stderr while it is blocked', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'sdk', { env: { PM_WATCHDOG_MS: String(LIMIT), API_TOKEN: 's3cr3t-value' } })
  const { from, to } = await blockAndWatch(s, dir, 4 * LIMIT, 'busy')
  const err = s.proc.stderr()
  const lines = err.split('\n')
  const head = lines.findIndex((l) => l === `pm-child: watchdog: no heartbeat for ${LIMIT} ms: the event loop is blocked, in JavaScript at:`)
  assert.ok(head >= 0, err)
  assert.match(lines[head + 1], /^ {4}at busyLoop \(.*watchdog\.js:\d+:\d+\)$/, 'the innermost frame is the busy function')
  assert.match(lines[head + 2], /^ {4}at blockTheLoop \(/)
  const prefix = 'pm-child: watchdog: diagnostic report (Node\'s process.report, without environment variables): '
  const reportLine = lines.find((l) => l.startsWith(prefix))
  assert.ok(reportLine, err)
  const report = JSON.parse(reportLine.slice(prefix.length))
  assert.equal(report.environmentVariables, undefined, 'no environment variables in the log')
  assert.ok(!reportLine.includes('s3cr3t-value'), 'not even through another field')
  assert.equal(report.header.processId, s.proc.pid)
  // Written while the loop was blocked, about a limit after the last heartbeat.
  const at = Number(report.header.dumpEventTimeStamp)
  assert.ok(at > from && at < to, `report at ${at}, block from ${from} to ${to}`)
  assert.equal(lines.filter((l) => l.startsWith('pm-child: watchdog:')).length, 2, 'one report per stall')
})

test('a loop blocked outside JavaScript: the watcher says so, and the late answer writes nothing more', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'sdk', { env: { PM_WATCHDOG_MS: String(LIMIT) } })
  await blockAndWatch(s, dir, 4 * LIMIT, 'sync')
  const err = s.proc.stderr()
  assert.equal(err, `pm-child: watchdog: no heartbeat for ${LIMIT} ms: the event loop is blocked outside JavaScript ` +
    '(a synchronous call or native code); no JavaScript stack\n')
})

test('PM_WATCHDOG_DIAGNOSTICS=0: heartbeats, but no diagnostic thread and none announced', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'sdk', { env: { PM_WATCHDOG_MS: String(LIMIT), PM_WATCHDOG_DIAGNOSTICS: '0' } })
  assert.equal('diagnostics' in (await s.hello()), false)
  await blockAndWatch(s, dir, 3 * LIMIT, 'busy')
  assert.equal(s.proc.stderr(), '')
})

test('heartbeat() takes the heartbeats over: none but its own from then on, at most one per tenth of the limit', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'sdk', { env: { PM_WATCHDOG_MS: String(LIMIT) } })
  await s.beatsUntil(3)
  // What came between the markers around the calls, and after them.
  const around = (n) => {
    const from = s.wire.findIndex((m) => m.calling === n)
    const to = s.wire.findIndex((m) => m.called === n)
    return { between: s.wire.slice(from + 1, to), after: to >= 0 ? s.wire.slice(to + 1) : null }
  }
  s.send({ beat: 1000 })
  await poll(() => `the calls${s.describe()}`, () => around(1000).after !== null)
  // A bounded wait for what must not come: three periods of automatic heartbeats.
  await new Promise((resolve) => setTimeout(resolve, 3 * PERIOD))
  assert.deepStrictEqual(around(1000).between, [{ cmd: 'NODE_PM', type: 'heartbeat' }], 'a thousand calls in a row: one heartbeat')
  assert.deepStrictEqual(around(1000).after, [], 'no automatic heartbeat after the first call')
  // Calls spaced by more than a tenth of the limit send one each.
  for (const n of [1, 2, 3]) {
    await new Promise((resolve) => setTimeout(resolve, LIMIT / 10 + 20))
    s.send({ beat: n })
    await poll(() => `call ${n}${s.describe()}`, () => around(n).after !== null)
    assert.deepStrictEqual(around(n).between, [{ cmd: 'NODE_PM', type: 'heartbeat' }], `call ${n}`)
  }
  await new Promise((resolve) => setTimeout(resolve, 2 * PERIOD))
  assert.deepStrictEqual(around(3).after, [])
})

test('node -r pm-child: a service without a line of SDK code is watched', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'no-sdk', { env: { PM_WATCHDOG_MS: String(LIMIT) }, preloadSdk: true })
  assert.equal((await s.hello()).diagnostics, 'self')
  const { times, from, to } = await blockAndWatch(s, dir, 3 * LIMIT, 'busy')
  assert.deepStrictEqual(times.filter((at) => at > from + 50 && at < to), [])
  assert.match(s.proc.stderr(), /\n {4}at busyLoop \(/)
})

test('express: heartbeats keep coming under a stream of requests; a handler that blocks stops them and is named', async (t) => {
  const dir = new TestDir(t)
  const s = service(dir, 'express', { env: { PM_WATCHDOG_MS: String(LIMIT) } })
  const { port } = await poll(() => `the server${s.describe()}`, () => dir.events().find((e) => e.event === 'listening'))
  // Ten requests at a time for two seconds.
  const start = Date.now()
  const before = s.beats().length
  let served = 0
  await Promise.all(Array.from({ length: 10 }, async () => {
    while (Date.now() - start < 2000) {
      const r = await httpGet(port, '/work')
      assert.equal(r.status, 200)
      served++
    }
  }))
  const busy = s.beats().filter((at) => at >= start)
  assert.ok(served > 100, `${served} requests served`)
  assert.ok(busy.length >= 2000 / PERIOD - 3, `${busy.length} heartbeats during 2 s of requests (${served} served)${s.describe()}`)
  assert.ok(Math.max(...gaps([start, ...busy, Date.now()])) < LIMIT, `gaps under load: ${gaps([start, ...busy])}`)
  assert.ok(s.beats().length > before)
  assert.equal(s.proc.stderr(), '')

  const blocked = await httpGet(port, `/block?ms=${3 * LIMIT}`)
  assert.equal(blocked.body, 'blocked')
  const from = dir.events().find((e) => e.event === 'blocking').at
  const to = dir.events().find((e) => e.event === 'unblocked').at
  await poll(() => `a heartbeat after the block${s.describe()}`, () => s.beats().some((at) => at > to))
  assert.deepStrictEqual(s.beats().filter((at) => at > from + 50 && at < to), [])
  assert.match(s.proc.stderr(), /\n {4}at busyLoop \([^\n]*\n {4}at blockTheLoop \([^\n]*\n {4}at [^\n]*watchdog\.js/)
})
