#!/usr/bin/env node
'use strict'
// Packs the npm packages for `make dist` (scripts/dist.sh):
//
//   node scripts/npm-pack.js --out DIR --platform linux-x64-gnu --binary FILE --python DIR
//
// - pm-child: the files of child-sdk-node/package.json, with `optionalDependencies` listing every
//   platform package of npm/ at pm-child's version (added here, not in the source package.json,
//   so that installs inside the repository never look for packages that are not published yet);
// - the platform package npm/<platform>/: its package.json and README, the license files,
//   bin/pm-supervisor and python/pm_child/ (the Python SDK, taken from the abi3 wheel).
//
// Each is copied into DIR/stage/<name>/ and packed with `npm pack` into DIR. npm leaves out
// symbolic links, so everything staged is a real file.

const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const ROOT = path.resolve(__dirname, '..')
const LICENSES = ['LICENSE-MIT', 'LICENSE-APACHE']

function args() {
  const out = {}
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`usage: npm-pack.js --out DIR --platform KEY --binary FILE --python DIR (at ${argv[i]})`)
    out[argv[i].slice(2)] = argv[i + 1]
  }
  for (const k of ['out', 'platform', 'binary', 'python']) {
    if (!out[k]) throw new Error(`npm-pack.js: --${k} is missing`)
  }
  return out
}

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'))
const writeJson = (file, value) => fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n')

/** Copies `from` (file or folder, links followed) to `to`. */
function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true })
  fs.cpSync(from, to, { recursive: true, dereference: true })
}

/** `npm pack` of `dir` into `out`; returns the tarball's path. */
function pack(dir, out) {
  const json = execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' })
  const [{ filename }] = JSON.parse(json)
  return path.join(out, filename)
}

function platformPackages() {
  const dir = path.join(ROOT, 'npm')
  return fs.readdirSync(dir).sort().map((key) => ({ key, dir: path.join(dir, key), pkg: readJson(path.join(dir, key, 'package.json')) }))
}

function stageMain(stage, platforms) {
  const src = path.join(ROOT, 'child-sdk-node')
  const pkg = readJson(path.join(src, 'package.json'))
  for (const f of [...pkg.files, 'README.md']) copy(path.join(src, f), path.join(stage, f))
  for (const f of LICENSES) copy(path.join(ROOT, f), path.join(stage, f))
  pkg.optionalDependencies = {}
  for (const { key, pkg: p } of platforms) {
    if (p.version !== pkg.version) throw new Error(`npm/${key}/package.json: version ${p.version}, pm-child is ${pkg.version}`)
    pkg.optionalDependencies[p.name] = pkg.version
  }
  delete pkg.devDependencies
  writeJson(path.join(stage, 'package.json'), pkg)
}

function stagePlatform(stage, platform, binary, python) {
  for (const f of ['package.json', 'README.md']) copy(path.join(platform.dir, f), path.join(stage, f))
  for (const f of LICENSES) copy(path.join(ROOT, f), path.join(stage, f))
  copy(binary, path.join(stage, 'bin', 'pm-supervisor'))
  fs.chmodSync(path.join(stage, 'bin', 'pm-supervisor'), 0o755)
  if (!fs.existsSync(path.join(python, 'pm_child', '__init__.py'))) throw new Error(`${python}: no pm_child package`)
  copy(path.join(python, 'pm_child'), path.join(stage, 'python', 'pm_child'))
}

function main() {
  const a = args()
  const out = path.resolve(a.out)
  const platforms = platformPackages()
  const platform = platforms.find((p) => p.key === a.platform)
  if (!platform) throw new Error(`no npm/${a.platform}/ (there are: ${platforms.map((p) => p.key).join(', ')})`)
  const stage = path.join(out, 'stage')
  fs.rmSync(stage, { recursive: true, force: true })
  stageMain(path.join(stage, 'pm-child'), platforms)
  stagePlatform(path.join(stage, a.platform), platform, path.resolve(a.binary), path.resolve(a.python))
  for (const name of ['pm-child', a.platform]) console.log(pack(path.join(stage, name), out))
}

main()
