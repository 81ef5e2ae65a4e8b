'use strict'
// Service specs for the manager, inside Electron: adapting a spec's paths to a packaged app
// (app.asar) and its Node services to Electron's own Node. Checking a spec is the supervisor's
// job (a bad one comes back as a `bad_spec` error naming the field): what is not as expected
// here is passed on unchanged for it to refuse.

const path = require('node:path')
const { ManagerError } = require('./manager-error')
const { asarFile, insideAsar, unpackedPath, isFile, isDir } = require('./manager-paths')

const NODE_EXTENSIONS = ['.js', '.mjs', '.cjs']
/** The longest request line the supervisor reads (protocol.md section 3). */
const MAX_LINE_BYTES = 1024 * 1024

/** A value, shortly, for messages about arguments. */
function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v)
  if (typeof v === 'object') return 'an object'
  if (typeof v === 'function') return 'a function'
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  return typeof v
}

const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)
/** A path field the supervisor would take (null and undefined mean "not set"). */
const pathIn = (spec, field) => (typeof spec[field] === 'string' && spec[field] !== '' ? spec[field] : undefined)
const unset = (v) => v === undefined || v === null

/** Whether the supervisor will launch the spec with Node by default (by extension). */
function isNodeScript(spec) {
  const script = pathIn(spec, 'script')
  return unset(spec.interpreter) && script !== undefined && NODE_EXTENSIONS.includes(path.extname(script).toLowerCase())
}

function notUnpacked(field, inArchive, unpacked, what) {
  return new ManagerError('not_unpacked',
    `spec.${field}: ${inArchive} is inside an asar archive, which ${what}; ` +
    `it must be unpacked to ${unpacked}, which does not exist: add it to electron-builder's "asarUnpack"`,
    { field })
}

/**
 * Adapts a spec to Electron (call it only when process.versions.electron is set):
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
 * `base` is the folder that relative `cwd` and `log` resolve against. A spec that is not an
 * object, and fields of the wrong type, are left as they are: the supervisor refuses them.
 */
function adaptForElectron(spec, { base, execPath }) {
  if (!isPlainObject(spec)) return spec
  const out = { ...spec }
  if (pathIn(spec, 'script') === undefined || (!unset(spec.cwd) && pathIn(spec, 'cwd') === undefined)) return out
  const cwd = path.resolve(base, pathIn(spec, 'cwd') !== undefined ? spec.cwd : '.')
  const log = pathIn(spec, 'log')
  if (log !== undefined && insideAsar(path.resolve(base, log))) {
    throw new ManagerError('bad_spec', `spec.log: ${path.resolve(base, log)} is inside an asar archive, which is read-only: ` +
      "write logs elsewhere, e.g. under app.getPath('logs')", { field: 'log' })
  }
  const node = isNodeScript(spec)
  // Electron's own binary running as Node reads scripts inside the archive.
  const electronNode = node && unset(spec.nodePath)
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
      const launcher = node || !unset(spec.interpreter) || ['.py'].includes(path.extname(spec.script))
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
    const v = pathIn(spec, field)
    // A bare name (`python3`) is looked up on PATH; a name with a '/' is a path from `cwd`.
    if (v === undefined || !v.includes('/')) continue
    const p = path.resolve(cwd, v)
    if (!insideAsar(p)) continue
    const unpacked = unpackedPath(p)
    if (!isFile(unpacked)) throw notUnpacked(field, p, unpacked, 'cannot be executed from there')
    out[field] = unpacked
  }
  // An env that is not an object is left for the supervisor to refuse.
  if (electronNode && (unset(spec.env) || isPlainObject(spec.env))) {
    out.nodePath = execPath
    const env = { ...(spec.env || {}) }
    if (!Object.prototype.hasOwnProperty.call(env, 'ELECTRON_RUN_AS_NODE')) env.ELECTRON_RUN_AS_NODE = '1'
    out.env = env
  }
  return out
}

module.exports = { MAX_LINE_BYTES, adaptForElectron, isNodeScript, describe }
