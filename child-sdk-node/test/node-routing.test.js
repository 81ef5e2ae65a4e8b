'use strict'
// Pins, on the Node that runs the tests, what the protocol relies on (protocol.md sections 3 and
// 9): Node hands a value its fork parent sends to 'internalMessage' exactly when it is an object
// whose `cmd` starts with `NODE_` (and is longer than that), so pm's own messages never reach an
// application's 'message' listeners and anything else reaches them untouched. Node documents
// non-Node peers as unsupported; this test is what tells if a Node version changes the rule.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const protocol = require('../lib/protocol')
const { FIXTURES, TestDir } = require('./support')

const VECTORS = path.resolve(__dirname, '..', '..', 'tests', 'protocol')

test('Node routes every vector value, pm messages and data alike, as the SDK expects', async (t) => {
  const dir = new TestDir(t)
  const values = []
  for (const file of ['to_child.jsonl', 'from_child.jsonl']) {
    for (const line of fs.readFileSync(path.join(VECTORS, file), 'utf8').split('\n').filter(Boolean)) {
      const c = JSON.parse(line)
      if (typeof c.line !== 'string') continue
      let v
      try {
        v = JSON.parse(c.line)
      } catch {
        continue
      }
      // Node acts on its handle-passing messages (a NODE_HANDLE_ACK nobody expects fails an
      // assertion in Node itself): pm never sends them, and they are left out here.
      if (v && typeof v.cmd === 'string' && v.cmd.startsWith('NODE_HANDLE')) continue
      values.push(v)
    }
  }
  values.push({ cmd: 'NODE_' }, { cmd: 'NODE_X' }, { cmd: 'node_pm' }, { cmd: ['NODE_PM'] }, [{ cmd: 'NODE_PM' }])
  assert.ok(values.filter((v) => protocol.isNodeInternal(v)).length >= 10)
  assert.ok(values.filter((v) => !protocol.isNodeInternal(v)).length >= 20)

  const child = dir.spawn('routing', process.execPath, [path.join(FIXTURES, 'routing.js')], { ipc: true })
  for (const v of [...values, 'done']) child.child.send(v)
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  // Each record is written before the child handles the next value, and 'done' last.
  const got = fs.readFileSync(dir.eventsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  assert.equal(got.length, values.length + 1)
  // In order, each where the rule says.
  assert.deepStrictEqual(got.slice(0, -1), values.map((value) => ({
    route: protocol.isNodeInternal(value) ? 'internalMessage' : 'message',
    value,
  })))
})
