'use strict'
// The shared protocol vectors (tests/protocol/ at the root of the repository), run through the
// SDK's classifier and message builders, and through Node's own routing.
//
// Node's IPC channel does the framing and the JSON parsing, then routes each value: objects
// whose `cmd` starts with `NODE_` (pm's own messages among them) to 'internalMessage', where
// the SDK listens; everything else to the application's 'message' listeners, untouched. So
// to_child cases whose line is not valid JSON are not the SDK's to judge, and are left out
// here, on purpose and by name:
// - not_json, not_utf8, too_long: Node's parser throws on such a line and the child exits with
//   code 1 (the supervisor never writes one; protocol.md section 9, point 9);
// - "empty line" (ignored/empty): an empty line is not JSON either, and Node 20 throws on it
//   too ("Unexpected end of JSON input"); it never reaches JavaScript.
// Every other case is checked, and the test fails if a vector file has no checkable case.
// test/node-routing.test.js checks on the real Node that it routes every case this way.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const protocol = require('../lib/protocol')

const VECTORS = path.resolve(__dirname, '..', '..', 'tests', 'protocol')

function vectors(file) {
  const text = fs.readFileSync(path.join(VECTORS, file), 'utf8')
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l))
}

/** The line's value as Node's channel would deliver it, or why it never would. */
function parsed(c) {
  if (typeof c.line !== 'string') return { skip: 'not a UTF-8 line of text (line_hex/line_gen)' }
  try {
    return { value: JSON.parse(c.line) }
  } catch {
    return { skip: 'not JSON: Node throws before the SDK sees anything' }
  }
}

/** The classifier's outcome in the vectors' terms. */
function outcome(c) {
  switch (c.kind) {
    case 'data':
      return { data: c.data }
    case 'stop':
    case 'disconnect':
      return { pm: c.message }
    case 'ignored':
      return { ignored: c.why }
    case 'error':
      return { error: c.error }
    default:
      throw new Error(`unexpected kind ${c.kind}`)
  }
}

test('to_child vectors: every case Node can deliver is classified as the other implementations do', () => {
  const cases = vectors('to_child.jsonl')
  const checked = []
  const skipped = []
  for (const c of cases) {
    const p = parsed(c)
    if (p.skip) {
      skipped.push(c.name)
      // Only lines Node cannot parse may be left out.
      assert.ok(['not_json', 'not_utf8', 'too_long'].includes(c.expect.error) || c.expect.ignored === 'empty',
        `${c.name}: skipped (${p.skip}) but expects ${JSON.stringify(c.expect)}`)
      continue
    }
    let got
    assert.doesNotThrow(() => {
      got = protocol.classify(p.value)
    }, c.name)
    assert.deepStrictEqual(outcome(got), c.expect, c.name)
    // Data is what the application's 'message' listener gets: Node routes it there, and only it.
    assert.equal(!protocol.isNodeInternal(p.value), 'data' in c.expect, `${c.name}: routing`)
    if ('data' in c.expect) assert.equal(JSON.stringify(got.data), JSON.stringify(c.expect.data), `${c.name}: key order`)
    checked.push(c.name)
  }
  assert.ok(checked.length >= 15, `checked ${checked.length} cases: ${checked}`)
  assert.ok(checked.includes('stop with an unknown reason'), 'bad_fields cases are checked')
  assert.deepStrictEqual(skipped.sort(), ['empty line', 'invalid UTF-8', 'not JSON'].sort(),
    'exactly the cases Node cannot deliver are skipped; a new vector must be looked at')
})

test('the normalized stop and disconnect keep the wire key order (to_child encode vectors)', () => {
  const cases = vectors('encode.jsonl').filter((c) => c.direction === 'to_child')
  assert.ok(cases.length >= 4)
  for (const c of cases) {
    const got = protocol.classify(JSON.parse(c.line))
    if (c.message.data !== undefined) {
      assert.equal(got.kind, 'data', c.name)
      assert.equal(JSON.stringify(got.data), c.line, c.name)
    } else {
      assert.equal(JSON.stringify({ cmd: protocol.PM_CMD, ...got.message }), c.line, c.name)
    }
  }
})

test('values a supervisor never sends are rejected, never thrown on', () => {
  const pm = (fields) => ({ cmd: 'NODE_PM', ...fields })
  const bad = [
    [pm({}), 'no_type'], [pm({ type: 7 }), 'no_type'], [pm({ type: null }), 'no_type'],
    [{ cmd: 'NODE_HANDLE', type: 'net.Socket' }, 'node_internal'],
    [pm({ type: 'stop', reason: 'stop', timeout_ms: -1 }), 'bad_fields'],
    [pm({ type: 'stop', reason: 'stop', timeout_ms: 1.5 }), 'bad_fields'],
    [pm({ type: 'stop', reason: 'stop', timeout_ms: '200' }), 'bad_fields'],
    [pm({ type: 'stop', reason: null, timeout_ms: 200 }), 'bad_fields'],
    [pm({ type: 'stop', reason: 'x'.repeat(100_000), timeout_ms: 200 }), 'bad_fields'],
  ]
  for (const [value, error] of bad) {
    const got = protocol.classify(value)
    assert.equal(got.kind, 'error', JSON.stringify(value).slice(0, 100))
    assert.equal(got.error, error, JSON.stringify(value).slice(0, 100))
    assert.equal(typeof got.detail, 'string')
    assert.ok(got.detail.length < 200, 'details are short and quote no long value')
  }
  // Unknown fields of known types are ignored, and dropped from the normalized message.
  assert.deepStrictEqual(protocol.classify(pm({ type: 'stop', reason: 'restart', timeout_ms: 0, extra: 1 })),
    { kind: 'stop', message: { type: 'stop', reason: 'restart', timeout_ms: 0 } })
})

test('encode vectors: every line a child writes is byte for byte the expected one', () => {
  const cases = vectors('encode.jsonl').filter((c) => c.direction === 'from_child')
  const builders = {
    hello: (m) => protocol.hello(m.sdk, m.version, m.diagnostics),
    ready: () => protocol.ready(),
    stopping: () => protocol.stopping(),
    term: () => protocol.term(),
    extend: (m) => protocol.extend(m.ms),
    heartbeat: () => protocol.heartbeat(),
  }
  const seen = new Set()
  for (const c of cases) {
    let msg
    if (c.message.data !== undefined) {
      // pm.send(data) writes the data itself.
      msg = c.message.data
      seen.add('data')
    } else {
      const build = builders[c.message.pm.type]
      assert.ok(build, `${c.name}: no builder for ${c.message.pm.type}`)
      msg = build(c.message.pm)
      seen.add(c.message.pm.type)
    }
    // What Node's channel writes in json mode, without its "\n".
    assert.equal(JSON.stringify(msg), c.line, c.name)
  }
  assert.deepStrictEqual([...seen].sort(), [...Object.keys(builders), 'data'].sort(), 'every message a child sends has a vector')
})

test('from_child vectors: a Node child\'s process.send(value) writes exactly the line the supervisor reads as that value', () => {
  for (const c of vectors('from_child.jsonl')) {
    if (c.expect.data === undefined) continue
    // JSON.stringify is what Node's channel writes; the supervisor reads the line back as the
    // same value, keys in the same order.
    const line = JSON.stringify(c.expect.data)
    assert.deepStrictEqual(JSON.parse(line), c.expect.data, c.name)
    assert.equal(protocol.isNodeInternal(c.expect.data), false, `${c.name}: data is never a pm message`)
  }
})
