'use strict'
// The pm protocol, version 1, as the Node child SDK speaks it (protocol.md, sections 3-5).
//
// Node's own IPC channel does the framing: in `json` mode it writes `JSON.stringify(msg) + "\n"`
// and hands every received line to 'message' already parsed. So this module only builds the
// objects a child sends (their key order is the wire order, checked against
// tests/protocol/encode.jsonl) and classifies the values the supervisor sends (checked against
// tests/protocol/to_child.jsonl). No I/O here.

const PROTOCOL_VERSION = 1

/** `reason` values of a `stop` message. */
const STOP_REASONS = Object.freeze(['stop', 'restart', 'shutdown'])

// Messages from a child to the supervisor.
const hello = (sdk, version) => ({ type: 'hello', protocol: PROTOCOL_VERSION, sdk, version })
const ready = () => ({ type: 'ready' })
const stopping = () => ({ type: 'stopping' })
const extend = (ms) => ({ type: 'extend', ms })
// `undefined` would make JSON.stringify drop the field; the protocol's default is null anyway.
const message = (data) => ({ type: 'message', data: data === undefined ? null : data })

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)

// A JSON integer that fits the u64 the other implementations use. (JSON.parse has already turned
// `200.0` into 200, which serde would reject; the supervisor never writes such numbers.)
const isU64 = (v) => Number.isSafeInteger(v) && v >= 0

/**
 * Classifies a value received from the supervisor, as the Rust codec does:
 * - `{ kind: 'stop', message: { type: 'stop', reason, timeout_ms } }`
 * - `{ kind: 'message', message: { type: 'message', data } }` (`data` defaults to null)
 * - `{ kind: 'ignored', why: 'unknown', type }`: a message type a child does not know
 * - `{ kind: 'error', error, detail }`: a bad line, `error` being `no_type`, `node_internal` or
 *   `bad_fields` (the vectors' names). A child ignores it.
 */
function classify(value) {
  if (!isObject(value)) {
    return bad('no_type', `expected an object with a string "type", found ${kindOf(value)}`)
  }
  if (typeof value.cmd === 'string' && value.cmd.startsWith('NODE_')) {
    // Node routes these to its internal handler, never to 'message'; rejected here all the same.
    return bad('node_internal', `Node-internal message ${JSON.stringify(value.cmd)}`)
  }
  if (typeof value.type !== 'string') {
    const found = 'type' in value ? `an object whose "type" is ${kindOf(value.type)}` : 'an object without "type"'
    return bad('no_type', `expected an object with a string "type", found ${found}`)
  }
  switch (value.type) {
    case 'stop': {
      const { reason, timeout_ms } = value
      if (!STOP_REASONS.includes(reason)) {
        return bad('bad_fields', `bad "stop" message: reason ${JSON.stringify(reason)} is not one of ${STOP_REASONS.join(', ')}`)
      }
      if (!isU64(timeout_ms)) {
        return bad('bad_fields', `bad "stop" message: timeout_ms ${JSON.stringify(timeout_ms)} is not a non-negative integer`)
      }
      return { kind: 'stop', message: { type: 'stop', reason, timeout_ms } }
    }
    case 'message':
      return { kind: 'message', message: message(value.data) }
    default:
      return { kind: 'ignored', why: 'unknown', type: value.type }
  }
}

function bad(error, detail) {
  return { kind: 'error', error, detail }
}

function kindOf(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`
  return `a ${typeof v}`
}

module.exports = { PROTOCOL_VERSION, STOP_REASONS, hello, ready, stopping, extend, message, classify }
