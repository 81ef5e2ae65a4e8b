'use strict'
// The Node patterns the READMEs show are the tests' own code: each fenced block that follows a
// `<!-- pattern: FILE NAME -->` comment (FILE relative to the repository) is the part of FILE
// between the lines ending in `README: NAME` and `README: end`, dedented. (The same marks are
// checked for the Rust and Python patterns by child-sdk-python/tests/test_readme_patterns.py.)

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { PACKAGE } = require('./support')

const REPO = path.join(PACKAGE, '..')
const MARK = /<!-- pattern: (\S+) (\S+) -->\n```[a-z]*\n([\s\S]*?)```/g

/** What each README must show, at least. */
const REQUIRED = {
  'README.md': ['express-handler', 'plain-script'],
  'child-sdk-node/README.md': ['express-handler', 'express-sigterm', 'fastify-handler', 'plain-script'],
}

function dedent(lines) {
  const indents = lines.filter((l) => l.trim() !== '').map((l) => l.length - l.trimStart().length)
  const cut = indents.length ? Math.min(...indents) : 0
  return lines.map((l) => l.slice(cut)).join('\n') + '\n'
}

/** The lines of `file` between the one ending in `README: name` and the next `README: end`. */
function sourceBlock(file, name) {
  const lines = fs.readFileSync(path.join(REPO, file), 'utf8').split('\n')
  const start = lines.findIndex((l) => l.trim().endsWith(`README: ${name}`))
  assert.ok(start >= 0, `${file} has no line ending in "README: ${name}"`)
  const end = lines.findIndex((l, i) => i > start && l.trim().endsWith('README: end'))
  assert.ok(end > start, `${file}: "README: ${name}" has no "README: end" after it`)
  return dedent(lines.slice(start + 1, end))
}

/** The Node patterns a README shows: [{ file, name, block }]. */
function patterns(readme) {
  const text = fs.readFileSync(path.join(REPO, readme), 'utf8')
  return [...text.matchAll(MARK)]
    .map(([, file, name, block]) => ({ file, name, block }))
    .filter((p) => p.file.startsWith('child-sdk-node/'))
}

for (const [readme, names] of Object.entries(REQUIRED)) {
  test(`${readme} shows the Node patterns as the tests run them`, () => {
    const found = patterns(readme)
    assert.deepStrictEqual(names.filter((n) => !found.some((p) => p.name === n)), [], `patterns missing in ${readme}`)
    for (const { file, name, block } of found) {
      assert.equal(block, sourceBlock(file, name), `${readme}: pattern ${name} differs from ${file}`)
    }
  })
}
