'use strict'
// The shared protocol vectors (tests/protocol/ at the root of the repository), run through the
// SDK's message classifier and message builders.
//
// Node's IPC channel does the framing and the JSON parsing: 'message' hands the SDK values, not
// lines. So to_child cases whose line is not valid JSON are not the SDK's to judge, and are
// left out here, on purpose and by name:
// - not_json, not_utf8, too_long: Node's parser throws on such a line and the child exits with
//   code 1 (the supervisor never writes one; protocol.md section 9, point 9);
// - "empty line" (ignored/empty): an empty line is not JSON either, and Node 20 throws on it
//   too ("Unexpected end of JSON input"); it never reaches JavaScript.
// Every other case is checked, and the test fails if a vector file has no checkable case.

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
    case 'stop':
    case 'message':
      return { message: c.message }
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
    if (c.expect.message_data_len !== undefined) {
      assert.equal(got.kind, 'message', c.name)
      assert.equal(Buffer.byteLength(got.message.data), c.expect.message_data_len, c.name)
    } else {
      assert.deepStrictEqual(outcome(got), c.expect, c.name)
    }
    checked.push(c.name)
  }
  assert.ok(checked.length >= 8, `checked ${checked.length} cases: ${checked}`)
  assert.ok(checked.includes('stop with an unknown reason'), 'bad_fields cases are checked')
  assert.deepStrictEqual(skipped.sort(), ['empty line', 'invalid UTF-8', 'not JSON'].sort(),
    'exactly the cases Node cannot deliver are skipped; a new vector must be looked at')
})

test('the normalized stop and message keep the wire key order (to_child encode vectors)', () => {
  const cases = vectors('encode.jsonl').filter((c) => c.direction === 'to_child')
  assert.ok(cases.length >= 2)
  for (const c of cases) {
    const got = protocol.classify(JSON.parse(c.line))
    assert.equal(JSON.stringify(got.message), c.line, c.name)
  }
})

test('values a supervisor never sends are rejected, never thrown on', () => {
  const bad = [
    [null, 'no_type'], [42, 'no_type'], [[{ type: 'stop' }], 'no_type'], [{ type: 7 }, 'no_type'],
    [{ cmd: 'NODE_HANDLE', type: 'net.Socket' }, 'node_internal'],
    [{ type: 'stop', reason: 'stop', timeout_ms: -1 }, 'bad_fields'],
    [{ type: 'stop', reason: 'stop', timeout_ms: 1.5 }, 'bad_fields'],
    [{ type: 'stop', reason: 'stop', timeout_ms: '200' }, 'bad_fields'],
    [{ type: 'stop', reason: null, timeout_ms: 200 }, 'bad_fields'],
  ]
  for (const [value, error] of bad) {
    const got = protocol.classify(value)
    assert.equal(got.kind, 'error', JSON.stringify(value))
    assert.equal(got.error, error, JSON.stringify(value))
    assert.equal(typeof got.detail, 'string')
  }
  // Unknown fields of known types are ignored, and dropped from the normalized message.
  assert.deepStrictEqual(protocol.classify({ type: 'stop', reason: 'restart', timeout_ms: 0, extra: 1 }),
    { kind: 'stop', message: { type: 'stop', reason: 'restart', timeout_ms: 0 } })
})

test('encode vectors: every line a child writes is byte for byte the expected one', () => {
  const cases = vectors('encode.jsonl').filter((c) => c.direction === 'from_child')
  const builders = {
    hello: (m) => protocol.hello(m.sdk, m.version),
    ready: () => protocol.ready(),
    stopping: () => protocol.stopping(),
    extend: (m) => protocol.extend(m.ms),
    message: (m) => protocol.message(m.data),
  }
  const seen = new Set()
  for (const c of cases) {
    const build = builders[c.message.type]
    assert.ok(build, `${c.name}: no builder for ${c.message.type}`)
    // What Node's channel writes in json mode, without its "\n".
    assert.equal(JSON.stringify(build(c.message)), c.line, c.name)
    seen.add(c.message.type)
  }
  assert.deepStrictEqual([...seen].sort(), Object.keys(builders).sort(), 'every message a child sends has a vector')
})

test('a message sent without data carries data: null, the protocol default', () => {
  assert.equal(JSON.stringify(protocol.message(undefined)), '{"type":"message","data":null}')
  assert.equal(JSON.stringify(protocol.message(null)), '{"type":"message","data":null}')
})
