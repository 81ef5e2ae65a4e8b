'use strict'
// Test support: a temp folder per test, the real supervisor, and cleanup of everything a test
// started. Every process a test starts carries PM_TEST_DIR=<its folder> in its environment (the
// supervisor passes its environment on to its services), so teardown finds each one by that
// mark in /proc/<pid>/environ and SIGKILLs it by pid, even when the test failed half-way.
//
// Not a test file: `npm test` runs test/*.test.js only.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')

const PACKAGE = path.resolve(__dirname, '..')
const FIXTURES = path.join(__dirname, 'fixtures')
const CHILD = path.join(FIXTURES, 'child.js')
const CHILD_ESM = path.join(FIXTURES, 'child.mjs')
/** Fixtures of the manager tests (pm-child/supervisor). */
const MANAGER_FIXTURES = path.join(FIXTURES, 'manager')
/** A service using the SDK: `service.js [READY_MS|never]`. */
const SERVICE = path.join(MANAGER_FIXTURES, 'service.js')
/** A controlling process using the manager, driven by $CONTROLLER_PLAN. */
const CONTROLLER = path.join(MANAGER_FIXTURES, 'controller.js')
/** The workspace's Python test child (modes: report, sigterm, protocol, ...). */
const CHILD_PY = path.join(PACKAGE, '..', 'tests', 'fixtures', 'child.py')
/** The supervisor under test: $PM_SUPERVISOR_BIN, else the workspace's debug build. */
const SUPERVISOR = process.env.PM_SUPERVISOR_BIN || path.join(PACKAGE, '..', 'target', 'debug', 'pm-supervisor')

/** Long enough for a loaded 2-core machine; a passing test never waits this long. */
const PATIENCE = 20_000

/** Polls `fn` every 10 ms until it returns something other than undefined/null/false. */
async function poll(what, fn, timeout = PATIENCE) {
  const end = Date.now() + timeout
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== null && v !== false) return v
    if (Date.now() >= end) {
      throw new Error(`gave up after ${timeout} ms waiting for ${typeof what === 'function' ? what() : what}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** The state letter of a pid from /proc/<pid>/stat, or null when it is gone. */
function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 1).trim()[0]
  } catch {
    return null
  }
}

/** Whether a pid is alive (and not a zombie). */
function alive(pid) {
  const s = procState(pid)
  return s !== null && s !== 'Z' && s !== 'X'
}

/** "35 ms" or "1.2 s", as the supervisor prints durations, in ms. */
function parseDuration(text) {
  const m = /^([\d.]+) (ms|s)$/.exec(text)
  if (!m) throw new Error(`not a duration: ${text}`)
  return m[2] === 'ms' ? Number(m[1]) : Number(m[1]) * 1000
}

/** Fails with what to do when the supervisor binary is not built. */
function requireSupervisor() {
  if (!fs.existsSync(SUPERVISOR)) {
    throw new Error(`${SUPERVISOR} is missing: run \`cargo build -p pm-supervisor\` at the workspace root, or set PM_SUPERVISOR_BIN`)
  }
}

class TestDir {
  /** Makes the folder and registers its cleanup with the test `t`. */
  constructor(t) {
    this.path = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-node-test-'))
    this.eventsFile = path.join(this.path, 'events.jsonl')
    this.mark = `PM_TEST_DIR=${this.path}`
    this.fds = []
    t.after(() => this.cleanup())
  }

  /** Opens <name> in this folder for writing; the fd is closed at cleanup. */
  openFile(name) {
    const fd = fs.openSync(path.join(this.path, name), 'a')
    this.fds.push(fd)
    return fd
  }

  /** The text of <name> in this folder ('' when it does not exist). */
  read(name) {
    try {
      return fs.readFileSync(path.join(this.path, name), 'utf8')
    } catch {
      return ''
    }
  }

  /**
   * A Manager (pm-child/supervisor) in this test process: the supervisor under test, this
   * test's environment (so the supervisor and its services carry the mark and use the test's
   * runtime folder), its stdout and stderr to manager.out / manager.err, no process exit hooks
   * (they would act on the test runner). Teardown kills what it started by pid, like the rest.
   */
  manager(options = {}) {
    const { Manager } = require('../supervisor')
    const m = new Manager({
      supervisorPath: SUPERVISOR,
      name: 'test',
      env: this.env(),
      stdout: this.openFile('manager.out'),
      stderr: this.openFile('manager.err'),
      exitHooks: false,
      ...options,
    })
    // Teardown SIGKILLs the supervisor: expected, not worth a warning.
    m.on('close', () => {})
    return m
  }

  /**
   * Starts the controller fixture with `plan` (see fixtures/manager/controller.js), in this
   * test's folder (its process.cwd()), the default manager finding the supervisor under test
   * through PM_SUPERVISOR_BIN.
   */
  controller(plan, { name = 'controller', env = {} } = {}) {
    return this.spawn(name, process.execPath, [CONTROLLER], {
      env: { PM_SUPERVISOR_BIN: SUPERVISOR, CONTROLLER_PLAN: JSON.stringify(plan), ...env },
    })
  }

  /** This test's environment: the runner's, without any channel variables, plus the mark. */
  env(extra = {}) {
    const env = { ...process.env }
    for (const k of Object.keys(env)) {
      if (k.startsWith('PM_') || k.startsWith('NODE_CHANNEL_') || k === 'NODE_TEST_CONTEXT') delete env[k]
    }
    return {
      ...env,
      PM_TEST_DIR: this.path,
      PM_TEST_EVENTS: this.eventsFile,
      PM_RUNTIME_DIR: path.join(this.path, 'rt'),
      PM_LOG: 'info',
      ...extra,
    }
  }

  /** Writes {"services": services} to services.json; returns its path. */
  config(services) {
    const p = path.join(this.path, 'services.json')
    fs.writeFileSync(p, JSON.stringify({ services }))
    return p
  }

  /**
   * Starts `file args` with this test's environment, stdout and stderr going to
   * <name>.out / <name>.err, in a session of its own (signals meant for it never reach the
   * runner). Returns { child, pid, stdout(), stderr(), running(), signal(), wait(), waitStdout() }.
   */
  spawn(name, file, args, { env = {}, ipc = false } = {}) {
    const outFile = path.join(this.path, `${name}.out`)
    const errFile = path.join(this.path, `${name}.err`)
    const out = fs.openSync(outFile, 'w')
    const err = fs.openSync(errFile, 'w')
    let child
    try {
      child = spawn(file, args, {
        cwd: this.path,
        env: this.env(env),
        stdio: ipc ? ['ignore', out, err, 'ipc'] : ['ignore', out, err],
        detached: true,
      })
    } finally {
      fs.closeSync(out)
      fs.closeSync(err)
    }
    const read = (f) => {
      try {
        return fs.readFileSync(f, 'utf8')
      } catch {
        return ''
      }
    }
    const proc = {
      child,
      pid: child.pid,
      stdout: () => read(outFile),
      stderr: () => read(errFile),
      running: () => child.exitCode === null && child.signalCode === null,
      signal: (sig) => process.kill(child.pid, sig),
      /** Waits for the exit; returns { code, signal }. */
      wait: (timeout = PATIENCE) =>
        poll(() => `${name} (pid ${child.pid}) to exit\nstdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`,
          () => (proc.running() ? undefined : { code: child.exitCode, signal: child.signalCode }), timeout),
      /** Waits until stdout contains `text`; returns stdout. */
      waitStdout: (text) =>
        poll(() => `${JSON.stringify(text)} in the output of ${name}\nstdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`, () => {
          const out = proc.stdout()
          if (out.includes(text)) return out
          if (!proc.running()) throw new Error(`${name} exited before printing ${JSON.stringify(text)}\nstdout:\n${out}\nstderr:\n${proc.stderr()}`)
          return undefined
        }),
    }
    return proc
  }

  /** `pm-supervisor run <config>`. */
  run(config, env = {}) {
    return this.spawn('supervisor', SUPERVISOR, ['run', config], { env })
  }

  /** Every event the fixtures wrote so far. */
  events() {
    let text = ''
    try {
      text = fs.readFileSync(this.eventsFile, 'utf8')
    } catch {
      return []
    }
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
  }

  /** Waits for the first event of `kind` from service `svc`. */
  waitEvent(svc, kind) {
    return poll(() => `a ${JSON.stringify(kind)} event from ${JSON.stringify(svc)}; events: ${JSON.stringify(this.events())}`,
      () => this.events().find((e) => e.svc === svc && e.event === kind))
  }

  /** Live (not zombie) processes carrying this test's mark: [{ pid, cmd }]. */
  live() {
    const out = []
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue
      let env
      try {
        env = fs.readFileSync(`/proc/${name}/environ`)
      } catch {
        continue
      }
      if (!env.toString('utf8').split('\0').includes(this.mark)) continue
      if (!alive(name)) continue
      let cmd = ''
      try {
        cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()
      } catch {}
      out.push({ pid: Number(name), cmd })
    }
    return out
  }

  /** Waits until no marked process is alive; returns how long that took (ms). */
  async waitAllGone(timeout = PATIENCE) {
    const start = Date.now()
    await poll(() => `every process of the test to be gone; left: ${JSON.stringify(this.live())}`,
      () => this.live().length === 0, timeout)
    return Date.now() - start
  }

  /** SIGKILLs every marked process by pid until none is left, then removes the folder. */
  async cleanup() {
    try {
      await poll(() => `the test's processes to die; left: ${JSON.stringify(this.live())}`, () => {
        const left = this.live()
        for (const { pid } of left) {
          try {
            process.kill(pid, 'SIGKILL')
          } catch {}
        }
        return left.length === 0
      }, 5000)
    } finally {
      for (const fd of this.fds.splice(0)) {
        try {
          fs.closeSync(fd)
        } catch {}
      }
      fs.rmSync(this.path, { recursive: true, force: true })
    }
  }
}

/** The lines of `out` that `service`'s supervisor writes about it (stream `pm`). */
function pmLines(out, service) {
  return out.split('\n').filter((l) => l.includes(` ${service} pm  | `))
}

/** From `... stopped: exit code 0, 35 ms after the stop request ...`: { exit, ms }. */
function stoppedLine(out, service) {
  const line = pmLines(out, service).find((l) => l.includes('| stopped: '))
  if (!line) return null
  const m = /\| stopped: (.+), ([\d.]+ m?s) after the stop request/.exec(line)
  if (!m) throw new Error(`unexpected stopped line: ${line}`)
  return { exit: m[1], ms: parseDuration(m[2]), line }
}

/**
 * Packs `src` into `<resources>/app.asar` with @electron/asar 3.x, the files matching `unpack`
 * (a minimatch pattern, e.g. '{**\/bin/*,**\/*.py}') also copied to
 * `<resources>/app.asar.unpacked/`, as electron-builder's asarUnpack does. Returns the asar path.
 */
async function packApp(src, resources, unpack) {
  const asar = require('@electron/asar')
  fs.mkdirSync(resources, { recursive: true })
  const dest = path.join(resources, 'app.asar')
  await asar.createPackageWithOptions(src, dest, { unpack })
  return dest
}

/**
 * GET http://127.0.0.1:<port><path> with Node's default agent (keep-alive, as browsers do).
 * Resolves with { status, body, ms, end, connection } once the response has ended (`end`: its
 * Date.now(); `connection`: its Connection header);
 * rejects when the connection fails or is reset before that.
 */
function httpGet(port, urlPath) {
  const http = require('node:http')
  const start = Date.now()
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body, ms: Date.now() - start, end: Date.now(), connection: res.headers.connection }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/** Copies a folder tree (files keep their mode). */
function copyTree(from, to) {
  fs.cpSync(from, to, { recursive: true })
}

module.exports = {
  PACKAGE, FIXTURES, CHILD, CHILD_ESM, CHILD_PY, SUPERVISOR, PATIENCE, MANAGER_FIXTURES, SERVICE, CONTROLLER,
  poll, alive, requireSupervisor, parseDuration, pmLines, stoppedLine, TestDir, packApp, copyTree, httpGet,
}
