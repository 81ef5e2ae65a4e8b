'use strict'
// index.d.ts is hand-written: type-check small CommonJS and ESM TypeScript files that use the
// package by name (through its "exports" map) against it, with `tsc --noEmit`. The files also
// carry @ts-expect-error lines, so declarations that became too loose fail the check too.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const { PACKAGE } = require('./support')

test('index.d.ts type-checks the way users import the package (tsc --noEmit, node16 resolution)', () => {
  const tsc = path.join(PACKAGE, 'node_modules', 'typescript', 'bin', 'tsc')
  assert.ok(fs.existsSync(tsc), `${tsc} is missing: run \`npm ci\` in ${PACKAGE} first`)
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], {
    cwd: PACKAGE,
    encoding: 'utf8',
    timeout: 120_000,
  })
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
})
