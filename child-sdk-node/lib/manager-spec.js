'use strict'
// Service specs for the manager: checking one before it is sent (so that a mistake is a
// `bad_spec` error naming the field, as for a config file), and, inside Electron, adapting its
// paths to a packaged app (app.asar) and its Node services to Electron's own Node.

const path = require('node:path')
const { ManagerError } = require('./manager-error')
const { asarFile, insideAsar, unpackedPath, isFile, isDir } = require('./manager-paths')

/** The fields of a service spec (README, "Running your services"; protocol.md section 8.2). */
const FIELDS = Object.freeze([
  'script', 'name', 'args', 'cwd', 'log', 'env', 'restartAt', 'restartOk', 'stripANSI',
  'interpreter', 'nodePath', 'killTimeout', 'logMaxSize', 'logKeep',
])

const NODE_EXTENSIONS = ['.js', '.mjs', '.cjs']
/** The longest request line the supervisor reads (protocol.md section 3). */
const MAX_LINE_BYTES = 1024 * 1024

function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v)
  if (typeof v === 'object') return 'an object'
  if (typeof v === 'function') return 'a function'
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  return typeof v
}

function badSpec(field, message) {
  return new ManagerError('bad_spec', `spec${field ? '.' + field : ''}: ${message}`, { field })
}

const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)
const isCount = (v) => Number.isSafeInteger(v) && v >= 0

function checkPath(field, v) {
  if (typeof v !== 'string') throw badSpec(field, `expected a string, got ${describe(v)}`)
  if (v.trim() === '') throw badSpec(field, 'must not be empty')
  if (v.includes('\0')) throw badSpec(field, 'must not contain a NUL byte')
}

function checkCount(field, v, what) {
  if (!isCount(v)) throw badSpec(field, `expected ${what}, got ${describe(v)}`)
}

/**
 * Checks a spec the way the supervisor does and returns a copy holding only the fields that are
 * set (`undefined` and `null` mean "not set"). Throws a ManagerError with code `bad_spec`, a
 * message `spec.<field>: <what is wrong>` and `field` for the first problem found.
 */
function checkSpec(spec) {
  if (!isPlainObject(spec)) throw badSpec('', `expected an object with at least "script", got ${describe(spec)}`)
  const out = {}
  for (const key of Object.keys(spec)) {
    if (!FIELDS.includes(key)) throw badSpec(key, `unknown field (known fields: ${FIELDS.join(', ')})`)
    if (spec[key] !== undefined && spec[key] !== null) out[key] = spec[key]
  }
  if (out.script === undefined) throw badSpec('script', 'missing: the file to run is required')
  checkPath('script', out.script)
  if (out.name !== undefined) {
    if (typeof out.name !== 'string') throw badSpec('name', `expected a string, got ${describe(out.name)}`)
    if (out.name === '') throw badSpec('name', 'must not be empty (leave it out for a nameless service)')
  }
  if (out.args !== undefined) {
    if (!Array.isArray(out.args)) throw badSpec('args', `expected an array of strings, got ${describe(out.args)}`)
    out.args.forEach((a, i) => {
      if (typeof a !== 'string') throw badSpec(`args[${i}]`, `expected a string, got ${describe(a)}`)
      if (a.includes('\0')) throw badSpec(`args[${i}]`, 'must not contain a NUL byte')
    })
    out.args = out.args.slice()
  }
  for (const field of ['cwd', 'log', 'interpreter', 'nodePath']) {
    if (out[field] !== undefined) checkPath(field, out[field])
  }
  if (out.env !== undefined) {
    if (!isPlainObject(out.env)) throw badSpec('env', `expected an object of variables, got ${describe(out.env)}`)
    const env = {}
    for (const [k, v] of Object.entries(out.env)) {
      if (k === '' || k.includes('=') || k.includes('\0')) {
        throw badSpec(`env.${k}`, "variable names must be non-empty, without '=' or NUL")
      }
      if (v === undefined) continue
      const ok = typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))
      if (!ok) throw badSpec(`env.${k}`, `expected a string, number or boolean, got ${describe(v)}`)
      if (typeof v === 'string' && v.includes('\0')) throw badSpec(`env.${k}`, 'value must not contain a NUL byte')
      env[k] = v
    }
    out.env = env
  }
  if (out.restartAt !== undefined) {
    if (!Array.isArray(out.restartAt)) {
      throw badSpec('restartAt', `expected an array of delays in ms, got ${describe(out.restartAt)}`)
    }
    out.restartAt.forEach((d, i) => checkCount(`restartAt[${i}]`, d, 'a whole number of milliseconds >= 0'))
    out.restartAt = out.restartAt.slice()
  }
  for (const field of ['restartOk', 'killTimeout']) {
    if (out[field] !== undefined) checkCount(field, out[field], 'a whole number of milliseconds >= 0')
  }
  if (out.logMaxSize !== undefined) checkCount('logMaxSize', out.logMaxSize, 'a whole number of bytes >= 0')
  if (out.logKeep !== undefined) {
    checkCount('logKeep', out.logKeep, 'a whole number of files >= 0')
    if (out.logKeep > 1000) throw badSpec('logKeep', 'keeps at most 1000 files')
  }
  if (out.stripANSI !== undefined && typeof out.stripANSI !== 'boolean') {
    throw badSpec('stripANSI', `expected true or false, got ${describe(out.stripANSI)}`)
  }
  return out
}

/** Whether the supervisor will launch the spec with Node by default (by extension). */
function isNodeScript(spec) {
  return spec.interpreter === undefined && NODE_EXTENSIONS.includes(path.extname(spec.script).toLowerCase())
}

function notUnpacked(field, inArchive, unpacked, what) {
  return new ManagerError('not_unpacked',
    `spec.${field}: ${inArchive} is inside an asar archive, which ${what}; ` +
    `it must be unpacked to ${unpacked}, which does not exist: add it to electron-builder's "asarUnpack"`,
    { field })
}

/**
 * Adapts a checked spec to Electron (call it only when process.versions.electron is set):
 *
 * - a Node script (`.js`, `.mjs`, `.cjs`) with neither `interpreter` nor `nodePath` is run by
 *   Electron's own binary as Node, fork-style: `nodePath` = `execPath` and
 *   `ELECTRON_RUN_AS_NODE=1` in its `env` (unless the spec's env sets that variable itself). A
 *   spec that names a `nodePath` (a bundled Node) is left to it;
 * - `script`, `cwd`, `interpreter` and `nodePath` paths inside `app.asar` become the same paths
 *   under `app.asar.unpacked`: a process cannot run in a folder of an archive, nor execute a
 *   binary from it. A missing unpacked copy is a ManagerError with code `not_unpacked` naming the
 *   field — except for a Node script run by Electron as Node, which reads it from the archive
 *   (its working folder is then the one holding `app.asar` if the folder is not unpacked);
 * - a `log` inside `app.asar` is a `bad_spec` error: the archive cannot be written.
 *
 * `base` is the folder that relative `cwd` and `log` resolve against.
 */
function adaptForElectron(spec, { base, execPath }) {
  const out = { ...spec }
  const cwd = path.resolve(base, spec.cwd !== undefined ? spec.cwd : '.')
  if (spec.log !== undefined && insideAsar(path.resolve(base, spec.log))) {
    throw badSpec('log', `${path.resolve(base, spec.log)} is inside an asar archive, which is read-only: ` +
      "write logs elsewhere, e.g. under app.getPath('logs')")
  }
  const node = isNodeScript(spec)
  // Electron's own binary running as Node reads scripts inside the archive.
  const electronNode = node && spec.nodePath === undefined
  const script = path.resolve(cwd, spec.script)
  if (insideAsar(cwd)) {
    const unpacked = unpackedPath(cwd)
    if (isDir(unpacked)) {
      out.cwd = unpacked
    } else if (electronNode) {
      // A process needs a real working folder; a Node service resolves its modules from its
      // script's path, not from its working folder, so the folder holding the archive does.
      out.cwd = path.dirname(asarFile(cwd))
      out.script = script
    } else {
      throw notUnpacked('cwd', cwd, unpacked, 'cannot be a working folder')
    }
  }
  if (insideAsar(script)) {
    const unpacked = unpackedPath(script)
    if (isFile(unpacked)) {
      out.script = unpacked
    } else if (electronNode) {
      out.script = script
    } else {
      const launcher = node || spec.interpreter !== undefined || ['.py'].includes(path.extname(spec.script))
      // A bare executable name that is not a file in `cwd` is looked up on PATH by the
      // supervisor: nothing to unpack then.
      if (launcher || spec.script.includes('/')) {
        throw notUnpacked('script', script, unpacked, node
          ? 'a Node binary of its own (nodePath) cannot read from'
          : 'cannot be run from there')
      }
    }
  }
  for (const field of ['interpreter', 'nodePath']) {
    const v = spec[field]
    // A bare name (`python3`) is looked up on PATH; a name with a '/' is a path from `cwd`.
    if (v === undefined || !v.includes('/')) continue
    const p = path.resolve(cwd, v)
    if (!insideAsar(p)) continue
    const unpacked = unpackedPath(p)
    if (!isFile(unpacked)) throw notUnpacked(field, p, unpacked, 'cannot be executed from there')
    out[field] = unpacked
  }
  if (node && spec.nodePath === undefined) {
    out.nodePath = execPath
    const env = { ...(spec.env || {}) }
    if (!Object.prototype.hasOwnProperty.call(env, 'ELECTRON_RUN_AS_NODE')) env.ELECTRON_RUN_AS_NODE = '1'
    out.env = env
  }
  return out
}

module.exports = { FIELDS, MAX_LINE_BYTES, checkSpec, adaptForElectron, isNodeScript, describe }
