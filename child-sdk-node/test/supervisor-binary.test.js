'use strict'
// How the manager finds pm-supervisor: the supervisorPath option, then $PM_SUPERVISOR_BIN, then
// the installed platform package (@pm-child/linux-x64-gnu, ...; in a packaged Electron app its
// app.asar.unpacked copy), then an error naming the platform, the package and the way out.
// Layouts are made by hand here; make test-dist installs the real packed packages.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { TestDir, packApp, PACKAGE } = require('./support')
const { findSupervisor, platformPackage, PLATFORM_PACKAGES } = require('../lib/manager-paths')

const LINUX_X64 = { platform: 'linux', arch: 'x64', libc: 'glibc' }

/** Writes package.json for `name`@`version` in `dir`; with `binary`, an executable bin/pm-supervisor. */
function fakePackage(dir, name, version, { binary = false } = {}) {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version }))
  if (binary) {
    fs.mkdirSync(path.join(dir, 'bin'))
    fs.writeFileSync(path.join(dir, 'bin', 'pm-supervisor'), '#!/bin/sh\n', { mode: 0o755 })
    return path.join(dir, 'bin', 'pm-supervisor')
  }
  return null
}

/** An app as npm lays it out: node_modules/pm-child and node_modules/@pm-child/linux-x64-gnu. */
function npmApp(root, { platformVersion = '0.1.0' } = {}) {
  const modules = path.join(root, 'node_modules')
  const pmChild = path.join(modules, 'pm-child')
  fakePackage(pmChild, 'pm-child', '0.1.0')
  const binary = fakePackage(path.join(modules, '@pm-child', 'linux-x64-gnu'), '@pm-child/linux-x64-gnu', platformVersion, { binary: true })
  return { pmChild, binary }
}

test('order: the supervisorPath option, then PM_SUPERVISOR_BIN, then the platform package', (t) => {
  const dir = new TestDir(t)
  const { pmChild, binary } = npmApp(path.join(dir.path, 'app'))
  const other = path.join(dir.path, 'other-supervisor')
  fs.writeFileSync(other, '#!/bin/sh\n', { mode: 0o755 })
  const find = (opts) => findSupervisor({ packageDir: pmChild, ...LINUX_X64, ...opts })

  assert.equal(find({ env: {} }), binary)
  assert.equal(find({ env: { PM_SUPERVISOR_BIN: other } }), other)
  assert.equal(find({ env: { PM_SUPERVISOR_BIN: binary }, supervisorPath: other }), other)
  // Named explicitly but missing: refused, not replaced by the package's binary.
  const missing = path.join(dir.path, 'nope')
  for (const opts of [{ supervisorPath: missing, env: {} }, { env: { PM_SUPERVISOR_BIN: missing } }]) {
    assert.throws(() => find(opts), (err) => {
      assert.equal(err.code, 'supervisor_not_found')
      assert.ok(err.message.includes(`${missing} (${opts.supervisorPath ? 'the supervisorPath option' : 'PM_SUPERVISOR_BIN'}): not found`), err.message)
      return true
    })
  }
})

test('the platform package nested under pm-child (npm nesting, pnpm) is found before a hoisted one', (t) => {
  const dir = new TestDir(t)
  const { pmChild } = npmApp(path.join(dir.path, 'app'))
  const nested = fakePackage(path.join(pmChild, 'node_modules', '@pm-child', 'linux-x64-gnu'), '@pm-child/linux-x64-gnu', '0.1.0', { binary: true })
  assert.equal(findSupervisor({ env: {}, packageDir: pmChild, ...LINUX_X64 }), nested)
})

test('a platform package of another version is not used: the control protocol must match', (t) => {
  const dir = new TestDir(t)
  const { pmChild, binary } = npmApp(path.join(dir.path, 'app'), { platformVersion: '0.0.9' })
  assert.throws(() => findSupervisor({ env: {}, packageDir: pmChild, ...LINUX_X64 }), (err) => {
    assert.equal(err.code, 'supervisor_not_found')
    assert.ok(err.message.includes(`${binary} (@pm-child/linux-x64-gnu): version 0.0.9, but pm-child is 0.1.0`), err.message)
    return true
  })
})

test('in a packaged Electron app: pm-child inside app.asar, the platform package run from app.asar.unpacked', async (t) => {
  const dir = new TestDir(t)
  const src = path.join(dir.path, 'src')
  npmApp(src)
  const resources = path.join(dir.path, 'resources')
  const asar = await packApp(src, resources, '**/node_modules/@pm-child/**')
  const pmChild = path.join(asar, 'node_modules', 'pm-child')
  const unpacked = path.join(`${asar}.unpacked`, 'node_modules', '@pm-child', 'linux-x64-gnu', 'bin', 'pm-supervisor')
  assert.equal(findSupervisor({ env: {}, packageDir: pmChild, ...LINUX_X64 }), unpacked)

  // Packed but not unpacked: the error says to unpack it.
  const packedOnly = await packApp(src, path.join(dir.path, 'resources2'), '**/nothing')
  assert.throws(() => findSupervisor({ env: {}, packageDir: path.join(packedOnly, 'node_modules', 'pm-child'), ...LINUX_X64 }), (err) => {
    assert.equal(err.code, 'supervisor_not_found')
    assert.match(err.message, /inside an asar archive, so it must be unpacked/)
    assert.match(err.message, /"node_modules\/@pm-child\/linux-x64-gnu\/\*\*" to electron-builder's "asarUnpack"/)
    return true
  })
})

test('nothing installed: the error names the platform, the package and how to supply a binary', (t) => {
  const dir = new TestDir(t)
  const pmChild = path.join(dir.path, 'app', 'node_modules', 'pm-child')
  fakePackage(pmChild, 'pm-child', '0.1.0')
  const cases = [
    [LINUX_X64, 'linux-x64-gnu', '@pm-child/linux-x64-gnu'],
    [{ platform: 'linux', arch: 'arm64', libc: 'glibc' }, 'linux-arm64-gnu', '@pm-child/linux-arm64-gnu'],
    [{ platform: 'darwin', arch: 'arm64' }, 'darwin-arm64', '@pm-child/darwin-arm64'],
    [{ platform: 'darwin', arch: 'x64' }, 'darwin-x64', '@pm-child/darwin-x64'],
  ]
  for (const [where, key, name] of cases) {
    assert.throws(() => findSupervisor({ env: {}, packageDir: pmChild, ...where }), (err) => {
      assert.equal(err.code, 'supervisor_not_found')
      assert.ok(err.message.startsWith(`pm-supervisor not found for ${key}: the npm package ${name}@0.1.0 provides it`), err.message)
      assert.match(err.message, /optional dependenc/)
      assert.match(err.message, /supervisorPath option or set PM_SUPERVISOR_BIN/)
      return true
    })
  }
  for (const [where, key] of [[{ platform: 'linux', arch: 'x64', libc: 'musl' }, 'linux-x64-musl'], [{ platform: 'win32', arch: 'x64' }, 'win32-x64']]) {
    assert.throws(() => findSupervisor({ env: {}, packageDir: pmChild, ...where }), (err) => {
      assert.equal(err.code, 'supervisor_not_found')
      assert.ok(err.message.includes(`no pm-child platform package is made for ${key}`), err.message)
      assert.match(err.message, /PM_SUPERVISOR_BIN/)
      return true
    })
  }
})

test('this machine is linux-x64-gnu, and the package names match the packages in npm/', () => {
  assert.deepStrictEqual(platformPackage(), { key: 'linux-x64-gnu', name: '@pm-child/linux-x64-gnu' })
  const npmDir = path.join(PACKAGE, '..', 'npm')
  const onDisk = {}
  for (const key of fs.readdirSync(npmDir)) {
    const pkg = JSON.parse(fs.readFileSync(path.join(npmDir, key, 'package.json'), 'utf8'))
    onDisk[key] = pkg.name
    const [os, cpu, libc] = key.split('-')
    assert.deepStrictEqual(pkg.os, [os], key)
    assert.deepStrictEqual(pkg.cpu, [cpu], key)
    assert.deepStrictEqual(pkg.libc, libc === 'gnu' ? ['glibc'] : undefined, key)
    assert.equal(pkg.version, require('../package.json').version, `${key}: the same version as pm-child`)
  }
  assert.deepStrictEqual(onDisk, PLATFORM_PACKAGES)
})
