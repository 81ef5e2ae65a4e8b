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
 * The npm packages that carry pm-supervisor (and the pm_child Python extension), one per
 * platform, esbuild-style: the published pm-child lists them all as optionalDependencies and npm
 * installs the one whose `os`, `cpu` and `libc` fit (npm/<key>/package.json in the repository).
 */
const PLATFORM_PACKAGES = {
  'linux-x64-gnu': '@pm-child/linux-x64-gnu',
  'linux-arm64-gnu': '@pm-child/linux-arm64-gnu',
  'darwin-x64': '@pm-child/darwin-x64',
  'darwin-arm64': '@pm-child/darwin-arm64',
}

let glibc = null

/** Whether this Linux process runs on glibc (false on musl), from Node's own report. */
function isGlibc() {
  if (glibc === null) {
    const report = process.report
    const excluded = report.excludeNetwork
    try {
      report.excludeNetwork = true
      glibc = Boolean(report.getReport().header.glibcVersionRuntime)
    } catch {
      glibc = true
    } finally {
      report.excludeNetwork = excluded
    }
  }
  return glibc
}

/**
 * The platform as the package names spell it: `linux-x64-gnu`, `linux-arm64-musl`,
 * `darwin-arm64`, `win32-x64`; and the package that provides pm-supervisor there, or null when
 * none is planned.
 */
function platformPackage({ platform = process.platform, arch = process.arch, libc } = {}) {
  let key = `${platform}-${arch}`
  if (platform === 'linux') key += (libc !== undefined ? libc === 'glibc' : isGlibc()) ? '-gnu' : '-musl'
  return { key, name: Object.hasOwn(PLATFORM_PACKAGES, key) ? PLATFORM_PACKAGES[key] : null }
}

/** The `version` of the package.json at `file` (read unpacked first), or null. */
function packageVersion(file) {
  for (const f of [unpackedPath(file), file]) {
    try {
      return JSON.parse(fs.readFileSync(f, 'utf8')).version
    } catch {}
  }
  return null
}

/**
 * Folders where the platform package `name` may be installed, seen from `packageDir` (where
 * pm-child is): what require.resolve finds (it also knows Yarn PnP), then `node_modules/<name>`
 * in each folder up from there, as Node looks. The walk is what finds it from inside app.asar
 * when the archive cannot be read (its package.json may be unpacked only).
 */
function platformPackageDirs(name, packageDir) {
  const dirs = []
  try {
    dirs.push(path.dirname(require.resolve(`${name}/package.json`, { paths: [packageDir] })))
  } catch {}
  for (let d = path.resolve(packageDir); ; d = path.dirname(d)) {
    if (path.basename(d) !== 'node_modules') dirs.push(path.join(d, 'node_modules', name))
    if (path.dirname(d) === d) break
  }
  return [...new Set(dirs)]
}

function ownVersion(packageDir) {
  return packageVersion(path.join(packageDir, 'package.json'))
}

/**
 * The pm-supervisor binary, in this order: the `supervisorPath` option; $PM_SUPERVISOR_BIN; the
 * installed platform package (`@pm-child/linux-x64-gnu/bin/pm-supervisor` and so on, of the same
 * version as pm-child). A path inside an asar archive is looked for under `app.asar.unpacked`
 * instead: a binary cannot be executed from inside an archive. Throws a ManagerError with code
 * `supervisor_not_found` naming what was tried, the platform, the package that would have
 * provided the binary and how to supply one.
 *
 * `packageDir` (where pm-child is installed) and `platform`, `arch`, `libc` are for tests.
 */
function findSupervisor({ supervisorPath, env = process.env, packageDir = PACKAGE, platform, arch, libc } = {}) {
  const tried = []
  const check = (given, source) => {
    const wanted = path.resolve(given)
    const p = unpackedPath(wanted)
    if (isExecutableFile(p)) return p
    let why = isFile(p) ? 'not executable' : 'not found'
    if (p !== wanted) {
      why += ` (${wanted} is inside an asar archive, so it must be unpacked: add it to electron-builder's "asarUnpack")`
    }
    tried.push(`${p} (${source}): ${why}`)
    return null
  }
  const explicit = (given, source) => {
    const found = check(given, source)
    if (found === null) throw new ManagerError('supervisor_not_found', `pm-supervisor not found: ${tried.join('; ')}`)
    return found
  }
  // What is named explicitly is used or refused: falling back to another binary would hide a typo.
  if (supervisorPath !== undefined && supervisorPath !== null) return explicit(supervisorPath, 'the supervisorPath option')
  if (env.PM_SUPERVISOR_BIN) return explicit(env.PM_SUPERVISOR_BIN, 'PM_SUPERVISOR_BIN')

  const { key, name } = platformPackage({ platform, arch, libc })
  const supply = 'pass the supervisorPath option or set PM_SUPERVISOR_BIN to a pm-supervisor binary ' +
    '(pip install pm-supervisor, cargo install pm-supervisor, or cargo build --release -p pm-supervisor in the pm repository)'
  if (name === null) {
    throw new ManagerError('supervisor_not_found',
      `pm-supervisor not found: no pm-child platform package is made for ${key} (there are: ${Object.keys(PLATFORM_PACKAGES).join(', ')}); ${supply}`)
  }
  const version = ownVersion(packageDir)
  for (const dir of platformPackageDirs(name, packageDir)) {
    const found = check(path.join(dir, 'bin', BINARY), name)
    const theirs = found === null ? null : packageVersion(path.join(dir, 'package.json'))
    if (found !== null && (version === null || theirs === null || theirs === version)) return found
    if (found !== null) tried.push(`${found} (${name}): version ${theirs}, but pm-child is ${version}`)
  }
  throw new ManagerError('supervisor_not_found',
    `pm-supervisor not found for ${key}: the npm package ${name}${version ? `@${version}` : ''} provides it, as an optional dependency of pm-child, ` +
    'and it is not installed: install with optional dependencies (not --omit=optional or --no-optional), ' +
    `and in a packaged Electron app add "node_modules/${name}/**" to electron-builder's "asarUnpack"; or ${supply}. ` +
    `Tried: ${tried.join('; ')}`)
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
 * Makes an instance name for `pm-supervisor serve --name` out of `text` (an app's name): runs of
 * anything but letters, digits, '-', '_' and '.' become '-', leading '.' and '-' go, at most 64
 * characters. Empty when nothing is left. Only for default names: the supervisor alone judges a
 * name (a given one is passed on as it is), and test/manager-protocol.test.js checks that this
 * keeps exactly the names the shared vectors say it accepts.
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
  PLATFORM_PACKAGES, platformPackage, findSupervisor, fnv1a, sanitizeName, defaultName, inElectron, electronApp,
}
