'use strict'
// The patterns the READMEs show are the tested services: each part of a fixture between
// `// README:<name>` and `// README:end` must appear, exactly, in the READMEs that show it.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { FIXTURES, PACKAGE } = require('./support')

const PACKAGE_README = path.join(PACKAGE, 'README.md')
const ROOT_README = path.join(PACKAGE, '..', 'README.md')

const PATTERNS = [
  { file: 'express-handler.js', name: 'express-handler', readmes: [PACKAGE_README, ROOT_README] },
  { file: 'express-sigterm.js', name: 'express-sigterm', readmes: [PACKAGE_README] },
  { file: 'worker-script.js', name: 'plain-script', readmes: [PACKAGE_README] },
]

/** The lines between `// README:<name>` and `// README:end` in a fixture. */
function part(file, name) {
  const text = fs.readFileSync(path.join(FIXTURES, file), 'utf8')
  const begin = `// README:${name}\n`
  const start = text.indexOf(begin)
  assert.ok(start >= 0, `${file} has no ${JSON.stringify(begin.trim())} line`)
  const end = text.indexOf('// README:end\n', start)
  assert.ok(end > start, `${file}: ${name} has no end line`)
  return text.slice(start + begin.length, end)
}

for (const { file, name, readmes } of PATTERNS) {
  test(`the ${name} pattern in the READMEs is test/fixtures/${file}`, () => {
    const code = part(file, name)
    for (const readme of readmes) {
      const text = fs.readFileSync(readme, 'utf8')
      // A code block of its own, or the end of one that starts with a comment line.
      assert.ok(text.includes(`\n${code}\`\`\`\n`), `${path.relative(path.join(PACKAGE, '..'), readme)} does not show test/fixtures/${file} (${name}) as it is:\n${code}`)
    }
  })
}
