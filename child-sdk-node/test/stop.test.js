'use strict'
// The stop handler runner, in-process: order, awaiting, failures (protocol.md section 9,
// point 4). The integration tests run it again inside real children.

const test = require('node:test')
const assert = require('node:assert/strict')

const { runStopHandlers, failureLine } = require('../lib/stop')

test('handlers run once each, in registration order, each awaited before the next', async () => {
  const log = []
  let release
  const gate = new Promise((resolve) => { release = resolve })
  const run = runStopHandlers([
    () => log.push('one'),
    async () => {
      log.push('two starts')
      await gate
      log.push('two ends')
    },
    () => log.push('three'),
  ], () => assert.fail('no handler fails'))
  // Until the second handler's Promise settles, the third must not run.
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepStrictEqual(log, ['one', 'two starts'])
  release()
  await run
  assert.deepStrictEqual(log, ['one', 'two starts', 'two ends', 'three'])
})

test('a handler that throws or rejects is reported with its number, and the next one runs', async () => {
  const log = []
  const failures = []
  await runStopHandlers([
    () => { throw new Error('sync failure') },
    () => Promise.reject(new Error('async failure')),
    async () => { throw 'a string' }, // eslint-disable-line no-throw-literal
    () => log.push('four'),
  ], (n, err) => failures.push(failureLine(n, err)))
  assert.deepStrictEqual(log, ['four'])
  assert.deepStrictEqual(failures, [
    'pm-child: stop handler #1 failed: sync failure',
    'pm-child: stop handler #2 failed: async failure',
    'pm-child: stop handler #3 failed: a string',
  ])
})

test('a reporter that throws does not stop the sequence', async () => {
  const log = []
  await runStopHandlers([() => { throw new Error('x') }, () => log.push('two')], () => { throw new Error('reporter') })
  assert.deepStrictEqual(log, ['two'])
})
