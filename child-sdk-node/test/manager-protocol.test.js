'use strict'
// The manager's side of the control protocol, against the shared vectors
// (tests/protocol/control.jsonl, which the supervisor's and the CLI's tests read too): the
// requests its calls send, how it reads replies, events and a `fatal` message, and the instance
// names it makes. A stand-in for the supervisor process takes the requests and plays the lines,
// so every case runs without a process; manager.test.js drives the real supervisor.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { EventEmitter } = require('node:events')

const { Manager, ManagerError } = require('../supervisor')
const { sanitizeName } = require('../lib/manager-paths')

const VECTORS = path.join(__dirname, '..', '..', 'tests', 'protocol', 'control.jsonl')
const vectors = fs.readFileSync(VECTORS, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))

/** A supervisor process as the manager sees it: 'message', 'exit', 'disconnect' and send(). */
class StandIn extends EventEmitter {
  constructor() {
    super()
    this.pid = 4242
    this.connected = true
    this.channel = null
    this.sent = []
  }

  send(message, callback) {
    // What goes on the wire: Node's 'json' serialization drops undefined values.
    this.sent.push(JSON.parse(JSON.stringify(message)))
    if (callback) process.nextTick(callback, null)
    return true
  }

  ref() {}
  unref() {}

  /** Plays a line from the supervisor. */
  play(message) {
    this.emit('message', message)
  }

  /** The supervisor exits; its channel closes first (or, with `lateLines`, after). */
  exit(code, lateLines = []) {
    if (lateLines.length === 0) {
      this.connected = false
      this.emit('disconnect')
      this.emit('exit', code, null)
      return
    }
    this.emit('exit', code, null)
    for (const m of lateLines) this.play(m)
    this.connected = false
    this.emit('disconnect')
  }
}

/** A manager driving a stand-in. */
function managed() {
  const m = new Manager({ name: 'test', exitHooks: false, app: null })
  const sup = new StandIn()
  m._attach(sup)
  m.on('close', () => {})
  return { m, sup }
}

const nextTick = () => new Promise((resolve) => setImmediate(resolve))

/** A plausible answer to a request of `type`, for the calls that wait for one. */
function answer(type) {
  if (type === 'send') return { sent: 0 }
  if (type === 'disconnect') return { disconnected: 0 }
  if (type === 'logs') return { lines: [] }
  if (type === 'start') return { id: 1, name: null, pid: 7, state: 'running', ready: false, restarts: 0, crashes: 0, uptime_ms: 0, restart_in_ms: null, last_exit: null, error: null, memory: null, log: null }
  if (type === 'shutdown') return null
  return []
}

test('each manager call sends the request of the vectors, specs as given', async () => {
  const cases = vectors.filter((c) => c.manager !== undefined)
  assert.ok(cases.length >= 10, `${cases.length} cases`)
  for (const c of cases) {
    const { m, sup } = managed()
    const [method, args] = c.manager
    const call = m[method](...args)
    await nextTick()
    assert.equal(sup.sent.length, 1, c.name)
    const sent = sup.sent[0]
    const want = JSON.parse(c.request)
    want.id = sent.id
    // start() adds the folder its relative paths resolve against.
    if (want.type === 'start') want.base = process.cwd()
    assert.deepStrictEqual(sent, want, c.name)
    sup.play({ type: 'reply', id: sent.id, ok: true, result: answer(want.type) })
    if (want.type === 'shutdown') sup.exit(0)
    await call
  }
})

test('replies resolve with their result or reject with their code, message and field', async () => {
  const cases = vectors.filter((c) => c.message !== undefined && JSON.parse(c.message).type === 'reply')
  assert.ok(cases.length >= 10)
  for (const c of cases) {
    const { m, sup } = managed()
    const call = m.list()
    await nextTick()
    const reply = { ...JSON.parse(c.message), id: sup.sent[0].id }
    sup.play(reply)
    if (c.expect.answer !== undefined) {
      assert.deepStrictEqual(await call, reply.result, c.name)
      continue
    }
    await assert.rejects(call, (err) => {
      assert.ok(err instanceof ManagerError, c.name)
      assert.equal(err.code, c.expect.failure.code, c.name)
      assert.equal(err.message, reply.error, c.name)
      // The field is the reply's data, also when it is empty (the spec as a whole).
      assert.equal(err.field, c.expect.failure.field, c.name)
      assert.equal(err.request, 'list')
      return true
    }, c.name)
  }
})

test('events are passed on as "event" and by their name', () => {
  const cases = vectors.filter((c) => c.expect !== undefined && c.expect.event !== undefined)
  assert.ok(cases.length >= 8)
  for (const c of cases) {
    const { m, sup } = managed()
    const all = []
    const named = []
    m.on('event', (e) => all.push(e))
    m.on(c.expect.event, (e) => named.push(e))
    sup.play(JSON.parse(c.message))
    assert.deepStrictEqual(all, [JSON.parse(c.message)], c.name)
    assert.equal(named[0], all[0], c.name)
  }
})

test('a supervisor that cannot run: its fatal message is the error, whatever the order of exit and message', async () => {
  const cases = vectors.filter((c) => c.expect !== undefined && c.expect.fatal !== undefined)
  assert.ok(cases.length >= 2)
  for (const c of cases) {
    for (const late of [false, true]) {
      const { m, sup } = managed()
      const closed = []
      m.on('close', (info) => closed.push(info))
      const call = m.start({ script: 'a.js' })
      await nextTick()
      const fatal = JSON.parse(c.message)
      const code = fatal.code === 'already_running' ? 3 : 2
      if (late) {
        sup.exit(code, [fatal])
      } else {
        sup.play(fatal)
        sup.exit(code)
      }
      await assert.rejects(call, (err) => {
        assert.equal(err.code, c.expect.fatal, c.name)
        assert.ok(err.message.includes(fatal.error), err.message)
        assert.equal(err.request, 'start')
        return true
      }, `${c.name} (late: ${late})`)
      assert.equal(closed.length, 1)
      assert.equal(closed[0].error.code, c.expect.fatal)
      assert.equal(m.pid, null)
    }
  }
})

test('exit code 3 alone also says another supervisor runs the instance', async () => {
  const { m, sup } = managed()
  const call = m.list()
  await nextTick()
  sup.exit(3)
  await assert.rejects(call, { code: 'already_running' })
})

test('default instance names are made within the supervisor\'s rules', () => {
  const cases = vectors.filter((c) => c.instance !== undefined)
  assert.ok(cases.length >= 10)
  for (const c of cases) {
    // A valid name comes out of sanitizeName unchanged; any other is changed (or emptied).
    const kept = c.instance !== '' && sanitizeName(c.instance) === c.instance
    assert.equal(kept, c.valid, JSON.stringify(c.instance))
  }
})
