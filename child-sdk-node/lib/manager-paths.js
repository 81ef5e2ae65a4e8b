'use strict'
// Paths for the manager (supervisor.js): asar archives, finding the pm-supervisor binary, the
// default instance name, and Electron's `app` when there is one. No processes are started here.

const fs = require('node:fs')
const path = require('node:path')
const { ManagerError } = require('./manager-error')

/** The package folder (child-sdk-node/ in the workspace). */
const PACKAGE = path.resolve(__dirname, '..')
const BINARY = 'pm-supervisor'

/**
 * Where `p` enters an asar archive: the parts of its absolute path and the index of the first
 * part naming an archive (`app.asar`), or null when `p` does not go through one. By name only:
 * inside Electron, fs makes an archive look like a folder, so its type says nothing.
 */
function asarSplit(p) {
  const parts = path.resolve(p).split(path.sep)
  const i = parts.findIndex((s) => s.length > '.asar'.length && s.endsWith('.asar'))
  return i === -1 ? null : { parts, i }
}

/** Whether `p` is an asar archive or a path inside one. */
function insideAsar(p) {
  return asarSplit(p) !== null
}

/**
 * The same path under the archive's `.unpacked` folder, where electron-builder's `asarUnpack`
 * (and @electron/asar's `unpack`) put files that must exist on disk:
 * `/app/resources/app.asar/bin/x` -> `/app/resources/app.asar.unpacked/bin/x`. Paths that do not
 * go through an archive come back resolved but otherwise unchanged.
 */
function unpackedPath(p) {
  const s = asarSplit(p)
  if (s === null) return path.resolve(p)
  const parts = s.parts.slice()
  parts[s.i] += '.unpacked'
  return parts.join(path.sep)
}

/** The archive a path goes through (`/app/resources/app.asar`), or null. */
function asarFile(p) {
  const s = asarSplit(p)
  return s === null ? null : s.parts.slice(0, s.i + 1).join(path.sep)
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

function isDir(p) {
  try {
    return fs.statSync(p).isDirectory()
  } catch {
    return false
  }
}

function isExecutableFile(p) {
  if (!isFile(p)) return false
  try {
    fs.accessSync(p, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The pm-supervisor binary: the `supervisorPath` option, else $PM_SUPERVISOR_BIN, else the
 * workspace's build output next to this package (`../target/release/pm-supervisor`, then
 * `../target/debug/pm-supervisor`), for development. A path inside an asar archive is looked for
 * under `app.asar.unpacked` instead: a binary cannot be executed from inside an archive.
 * Throws a ManagerError with code `supervisor_not_found` saying what was tried.
 */
function findSupervisor({ supervisorPath, env = process.env } = {}) {
  let candidates
  if (supervisorPath !== undefined && supervisorPath !== null) {
    candidates = [[supervisorPath, 'the supervisorPath option']]
  } else if (env.PM_SUPERVISOR_BIN) {
    candidates = [[env.PM_SUPERVISOR_BIN, 'PM_SUPERVISOR_BIN']]
  } else {
    candidates = ['release', 'debug'].map((profile) => [
      path.join(PACKAGE, '..', 'target', profile, BINARY),
      `the workspace's ${profile} build`,
    ])
  }
  const tried = []
  for (const [given, source] of candidates) {
    const wanted = path.resolve(given)
    const p = unpackedPath(wanted)
    if (isExecutableFile(p)) return p
    let why = isFile(p) ? 'not executable' : 'not found'
    if (p !== wanted) {
      why += ` (${wanted} is inside an asar archive, so it must be unpacked: add it to electron-builder's "asarUnpack")`
    }
    tried.push(`${p} (${source}): ${why}`)
  }
  const hint = supervisorPath === undefined || supervisorPath === null
    ? '; pass the supervisorPath option or set PM_SUPERVISOR_BIN (in the workspace: cargo build -p pm-supervisor)'
    : ''
  throw new ManagerError('supervisor_not_found', `pm-supervisor not found: ${tried.join('; ')}${hint}`)
}

/** FNV-1a (32 bits) of a string's UTF-8 bytes, as 8 hex digits: stable across runs. */
function fnv1a(text) {
  let h = 0x811c9dc5
  for (const b of Buffer.from(text, 'utf8')) {
    h ^= b
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h.toString(16).padStart(8, '0')
}

/**
 * Makes `text` a valid instance name for `pm-supervisor serve --name`: letters, digits, '-',
 * '_' and '.', not starting with '.' (runs of anything else become '-'), at most 64 characters
 * (the control socket's path must stay short). Empty when nothing is left.
 */
function sanitizeName(text) {
  return String(text)
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[.-]+/, '')
    .slice(0, 64)
    .replace(/-+$/, '')
}

/**
 * The default instance name: Electron's `app.getName()` when there is an app, else the main
 * script's base name plus a hash of its full path (`server-1a2b3c4d`), so that two apps whose
 * scripts are both called index.js do not share a lock. Stable across launches, which is what
 * lets a launch clean up what a crashed one left.
 */
function defaultName({ app = null, main } = {}) {
  if (app && typeof app.getName === 'function') {
    const n = sanitizeName(app.getName())
    if (n) return n
  }
  const script = main !== undefined ? main : (require.main && require.main.filename) || process.argv[1]
  if (script) {
    const abs = path.resolve(script)
    const stem = sanitizeName(path.basename(abs, path.extname(abs)).slice(0, 40)) || 'node'
    return `${stem}-${fnv1a(abs)}`
  }
  return `node-${fnv1a(process.cwd())}`
}

/** Whether this process runs inside Electron (also as ELECTRON_RUN_AS_NODE). */
function inElectron() {
  return typeof process.versions.electron === 'string' && process.versions.electron !== ''
}

/**
 * Electron's `app` in an Electron main process; null elsewhere (plain Node, an
 * ELECTRON_RUN_AS_NODE process, where require('electron') is not the API).
 */
function electronApp() {
  if (!inElectron()) return null
  try {
    const electron = require('electron')
    const app = electron && electron.app
    return app && typeof app.on === 'function' && typeof app.quit === 'function' ? app : null
  } catch {
    return null
  }
}

module.exports = {
  PACKAGE, asarSplit, asarFile, insideAsar, unpackedPath, isFile, isDir, isExecutableFile,
  findSupervisor, fnv1a, sanitizeName, defaultName, inElectron, electronApp,
}
