'use strict'
// The pm protocol, version 2, as the Node child SDK speaks it (protocol.md, sections 3-5).
//
// Node's own IPC channel does the framing: in `json` mode it writes `JSON.stringify(msg) + "\n"`
// and hands every received line over already parsed, to 'internalMessage' when it is an object
// whose `cmd` starts with `NODE_` (Node's internal messages, which pm's own messages are:
// `{"cmd":"NODE_PM","type":...}`), to the application's 'message' listeners otherwise. So this
// module only builds the messages a child sends (their key order is the wire order, checked
// against tests/protocol/encode.jsonl) and classifies what arrives (checked against
// tests/protocol/to_child.jsonl). No I/O here.

const PROTOCOL_VERSION = 2

/** The `cmd` of pm's own messages. */
const PM_CMD = 'NODE_PM'

/** `reason` values of a `stop` message. */
const STOP_REASONS = Object.freeze(['stop', 'restart', 'shutdown'])

/**
 * Whether Node routes `value` to 'internalMessage' rather than 'message': the rule of Node's
 * lib/internal/child_process.js (isInternal), pinned by test/node-routing.test.js.
 */
function isNodeInternal(value) {
  return value !== null && typeof value === 'object' && typeof value.cmd === 'string' &&
    value.cmd.length > 'NODE_'.length && value.cmd.startsWith('NODE_')
}

// pm's messages from a child to the supervisor. Application data travels as it is.
// `diagnostics` (optional): how to get a diagnostic out of this process when the watchdog finds
// it hung; the Node SDK writes its own ("self").
const hello = (sdk, version, diagnostics) => (diagnostics === undefined
  ? { cmd: PM_CMD, type: 'hello', protocol: PROTOCOL_VERSION, sdk, version }
  : { cmd: PM_CMD, type: 'hello', protocol: PROTOCOL_VERSION, sdk, version, diagnostics })
const ready = () => ({ cmd: PM_CMD, type: 'ready' })
const stopping = () => ({ cmd: PM_CMD, type: 'stopping' })
// The answer to `stop` when there are no stop handlers: SIGTERM me, as a program without the SDK.
const term = () => ({ cmd: PM_CMD, type: 'term' })
const extend = (ms) => ({ cmd: PM_CMD, type: 'extend', ms })
// "I am alive", for the supervisor's watchdog (PM_WATCHDOG_MS).
const heartbeat = () => ({ cmd: PM_CMD, type: 'heartbeat' })

// A JSON integer that fits the u64 the other implementations use. (JSON.parse has already turned
// `200.0` into 200, which serde would reject; the supervisor never writes such numbers.)
const isU64 = (v) => Number.isSafeInteger(v) && v >= 0

/**
 * Classifies a value received from the supervisor, as the Rust codec does:
 * - `{ kind: 'data', data }`: application data (Node hands it to 'message' listeners);
 * - `{ kind: 'stop', message: { type: 'stop', reason, timeout_ms } }`;
 * - `{ kind: 'disconnect', message: { type: 'disconnect' } }`;
 * - `{ kind: 'ignored', why: 'unknown', type }`: a pm message type a child does not know;
 * - `{ kind: 'error', error, detail }`: a bad line, `error` being `no_type`, `node_internal` or
 *   `bad_fields` (the vectors' names). A child ignores it.
 */
function classify(value) {
  if (!isNodeInternal(value)) return { kind: 'data', data: value }
  if (value.cmd !== PM_CMD) {
    return bad('node_internal', `Node-internal message ${JSON.stringify(value.cmd.slice(0, 40))}`)
  }
  if (typeof value.type !== 'string') {
    const found = 'type' in value ? kindOf(value.type) : 'none'
    return bad('no_type', `a pm message needs a string "type", found ${found}`)
  }
  switch (value.type) {
    case 'stop': {
      const { reason, timeout_ms } = value
      if (!STOP_REASONS.includes(reason)) {
        return bad('bad_fields', `bad "stop" message: reason ${kindOf(reason)} is not one of ${STOP_REASONS.join(', ')}`)
      }
      if (!isU64(timeout_ms)) {
        return bad('bad_fields', `bad "stop" message: timeout_ms is ${kindOf(timeout_ms)}, not a non-negative integer`)
      }
      return { kind: 'stop', message: { type: 'stop', reason, timeout_ms } }
    }
    case 'disconnect':
      return { kind: 'disconnect', message: { type: 'disconnect' } }
    default:
      return { kind: 'ignored', why: 'unknown', type: value.type.slice(0, 40) }
  }
}

function bad(error, detail) {
  return { kind: 'error', error, detail }
}

function kindOf(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return v.length <= 24 ? `the string ${JSON.stringify(v)}` : `a string of ${v.length} characters`
  return `a ${typeof v}`
}

module.exports = { PROTOCOL_VERSION, PM_CMD, STOP_REASONS, isNodeInternal, hello, ready, stopping, term, extend, heartbeat, classify }
