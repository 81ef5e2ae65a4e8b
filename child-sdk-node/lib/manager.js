'use strict'
// The manager: runs `pm-supervisor serve` for this (controlling) process and drives it over the
// control channel of protocol.md section 8, on Node's own 'ipc' stdio slot (the supervisor finds
// it through NODE_CHANNEL_FD). Requests are `child.send({type, id, ...})`; replies, events and a
// `fatal` message come back on 'message'. When this process dies, even by SIGKILL, the channel
// closes and the supervisor stops every service and exits.
//
// The supervisor owns every rule: specs and instance names are sent as given, and its errors
// (with their `code` and, for a bad spec, `field`) are what the calls reject with. The lines are
// checked against tests/protocol/control.jsonl, which the supervisor's own tests read too.

const { EventEmitter } = require('node:events')
const { spawn } = require('node:child_process')

const { ManagerError } = require('./manager-error')
const { findSupervisor, defaultName, inElectron, electronApp } = require('./manager-paths')
const { adaptForElectron, MAX_LINE_BYTES, describe } = require('./manager-spec')
const exitHooks = require('./manager-exit')
const { runStopHandlers, describe: describeError } = require('./stop')

/** Variables the supervisor must not inherit from this process. */
const STRIPPED_ENV = ['ELECTRON_RUN_AS_NODE', 'NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE', 'PM_CHANNEL_FD', 'PM_CHANNEL_ID']
const DEFAULT_EXIT_TIMEOUT = 10_000
/** The supervisor's exit code when another supervisor runs its instance (protocol.md section 8.6). */
const EXIT_ALREADY_RUNNING = 3
/** How long to wait, after the supervisor exited, for the last lines on its channel. */
const LAST_LINES_WAIT = 1000

function invalidArg(message) {
  const err = new TypeError(message)
  err.code = 'ERR_INVALID_ARG_VALUE'
  return err
}

function checkTimeout(what, v) {
  if (!(Number.isSafeInteger(v) && v >= 0)) throw invalidArg(`${what} must be a whole number of milliseconds >= 0, got ${describe(v)}`)
}

const delay = (ms) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms)
  // Bounds never keep the process alive by themselves.
  t.unref()
})

class Manager extends EventEmitter {
  /**
   * @param {object} [options]
   * @param {string} [options.supervisorPath] the pm-supervisor binary (see findSupervisor)
   * @param {string} [options.name] instance name (default: Electron's app name, else the main
   *   script's name and a hash of its path)
   * @param {NodeJS.ProcessEnv} [options.env] the supervisor's environment, which its services
   *   inherit (default process.env); ELECTRON_RUN_AS_NODE and channel variables are removed
   * @param {'inherit'|'ignore'|number|import('node:stream').Stream} [options.stdout] where
   *   services without a `log` write (the supervisor's stdout); default 'inherit'
   * @param {'inherit'|'ignore'|number|import('node:stream').Stream} [options.stderr] where the
   *   supervisor's own diagnostics go; default 'inherit'
   * @param {boolean} [options.exitHooks] stop everything when this process exits (default true)
   * @param {number} [options.exitTimeout] bound in ms for onstopping handlers plus stopping the
   *   services when this process exits (default 10000)
   * @param {object|null} [options.app] Electron's `app` (default: require('electron').app in an
   *   Electron main process); null for none
   */
  constructor(options = {}) {
    super()
    if (typeof options !== 'object' || options === null) throw invalidArg(`options must be an object, got ${describe(options)}`)
    const known = ['supervisorPath', 'name', 'env', 'stdout', 'stderr', 'exitHooks', 'exitTimeout', 'app']
    for (const k of Object.keys(options)) {
      if (!known.includes(k)) throw invalidArg(`unknown option ${JSON.stringify(k)} (known: ${known.join(', ')})`)
    }
    // What a name may hold is the supervisor's rule: a name it refuses fails the first start()
    // with its error (code `bad_instance_name`).
    if (options.name !== undefined && typeof options.name !== 'string') {
      throw invalidArg(`name must be a string, got ${describe(options.name)}`)
    }
    if (options.exitTimeout !== undefined) checkTimeout('exitTimeout', options.exitTimeout)
    for (const k of ['stdout', 'stderr']) {
      const v = options[k]
      const ok = v === undefined || v === 'inherit' || v === 'ignore' || (Number.isSafeInteger(v) && v >= 0) ||
        (typeof v === 'object' && v !== null)
      if (!ok) throw invalidArg(`${k} must be 'inherit', 'ignore', a file descriptor or a stream with one (not a pipe to this process), got ${describe(v)}`)
    }
    this._options = { ...options }
    this._app = options.app !== undefined ? options.app : electronApp()
    this._child = null
    this._exited = null // Promise resolved when the current supervisor process has exited
    this._nextId = 1
    this._pending = new Map()
    this._refWanted = true
    this._refState = true
    this._stopHandlers = []
    this._hooked = false
    this._quitting = null // Promise of the exit sequence, once begun
    this._handlersRun = false
    this._shuttingDown = 0
    this._name = null
    this._binary = null
  }

  /** The instance name the supervisor runs (or will run) under. */
  get name() {
    if (this._name === null) this._name = this._options.name !== undefined ? this._options.name : defaultName({ app: this._app })
    return this._name
  }

  /** The supervisor's pid while one is running, else null. */
  get pid() {
    return this._child ? this._child.pid : null
  }

  /** The binary of the running (or last) supervisor, else null. */
  get supervisorPath() {
    return this._binary
  }

  // --- The supervisor process --------------------------------------------------------------

  _spawn() {
    if (this._child) return this._child
    const binary = findSupervisor({ supervisorPath: this._options.supervisorPath })
    const env = { ...(this._options.env || process.env) }
    for (const k of STRIPPED_ENV) delete env[k]
    const stdout = this._options.stdout !== undefined ? this._options.stdout : 'inherit'
    const stderr = this._options.stderr !== undefined ? this._options.stderr : 'inherit'
    // detached: a session of its own, so that a terminal's Ctrl-C reaches this process (whose
    // onstopping handlers run first) and not the supervisor directly. The supervisor still
    // stops everything when this process dies: its control channel closes.
    // stdout and stderr are never pipes to this process: a pipe would break when this process
    // dies, just when the supervisor has the most to do (and to log).
    const child = spawn(binary, ['serve', `--name=${this.name}`], {
      env,
      stdio: ['ignore', stdout, stderr, 'ipc'],
      serialization: 'json',
      detached: true,
      windowsHide: true,
    })
    this._binary = binary
    this._attach(child)
    return child
  }

  /**
   * Drives `child`, a supervisor process with a control channel (a ChildProcess with 'ipc', or
   * a stand-in with the same events and send() in tests).
   */
  _attach(child) {
    this._child = child
    // Why the supervisor cannot run, when it says so before it exits.
    let fatal = null
    child.on('message', (m) => {
      if (typeof m === 'object' && m !== null && m.type === 'fatal') fatal = m
      else this._onMessage(m)
    })
    let exitedResolve
    this._exited = new Promise((resolve) => { exitedResolve = resolve })
    let gone = false
    const onGone = (code, signal, error) => {
      if (gone) return
      gone = true
      if (this._child === child) this._child = null
      this._onSupervisorGone(code, signal, error, fatal)
      exitedResolve({ code, signal })
    }
    child.on('exit', (code, signal) => {
      // Lines written just before the exit (a `fatal` message, replies) may still be on their
      // way: the channel's end, or a bound, says they are all in.
      if (!child.connected) return onGone(code, signal, null)
      const t = setTimeout(() => onGone(code, signal, null), LAST_LINES_WAIT)
      child.once('disconnect', () => {
        clearTimeout(t)
        onGone(code, signal, null)
      })
    })
    child.on('error', (err) => {
      // A failed spawn (no 'exit' follows), or a failed kill/send (ignored: 'exit' follows).
      if (child.pid === undefined) onGone(null, null, err)
    })
    this._refState = true
    this._applyRef()
    this._hook()
  }

  _onSupervisorGone(code, signal, error, fatal) {
    const instance = `pm-supervisor (instance ${JSON.stringify(this.name)})`
    const how = error ? `could not be started: ${error.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`
    let err
    if (fatal !== null && typeof fatal.code === 'string') {
      // The supervisor said why it cannot run (protocol.md section 8.6).
      err = new ManagerError(fatal.code, `${instance} cannot run: ${fatal.error}` + hint(fatal.code))
    } else if (code === EXIT_ALREADY_RUNNING) {
      err = new ManagerError('already_running', `${instance} exited with code ${code}: another pm-supervisor runs this instance` + hint('already_running'))
    } else {
      err = new ManagerError('supervisor_exited', `${instance} ${how}` + (code ? ' (its stderr says why)' : ''))
    }
    const pending = [...this._pending.values()]
    this._pending.clear()
    for (const p of pending) p.reject(new ManagerError(err.code, err.message, { request: p.type }))
    const expected = this._shuttingDown > 0 || this._quitting !== null
    if (!expected && this.listenerCount('close') === 0 && pending.length === 0) {
      // Nobody is told otherwise: an unexpected end of the supervisor must not go unnoticed.
      process.emitWarning(err.message, { code: err.code })
    }
    this.emit('close', { code, signal, expected, error: expected ? null : err })
  }

  _applyRef() {
    const child = this._child
    if (!child) return
    const want = this._refWanted || this._pending.size > 0 || this._shuttingDown > 0 || this._quitting !== null
    if (want === this._refState) return
    this._refState = want
    const handles = [child, child.channel]
    for (const h of handles) {
      if (h && typeof h.ref === 'function') {
        if (want) h.ref()
        else h.unref()
      }
    }
  }

  _hook() {
    if (this._hooked || this._options.exitHooks === false) return
    this._hooked = true
    exitHooks.register(this, this._app)
  }

  /**
   * Lets this process exit while the supervisor runs (its services are then stopped, as at any
   * exit). Like ChildProcess#unref. Requests in flight still keep the process alive.
   */
  unref() {
    this._refWanted = false
    this._applyRef()
    return this
  }

  /** Undoes unref(): the running supervisor keeps this process alive (the default). */
  ref() {
    this._refWanted = true
    this._applyRef()
    return this
  }

  // --- Requests ----------------------------------------------------------------------------

  _onMessage(m) {
    if (typeof m !== 'object' || m === null) return
    if (m.type === 'reply') {
      const p = this._pending.get(m.id)
      if (!p) {
        if (m.id === null) process.emitWarning(`pm-supervisor refused a request: ${m.error}`, { code: m.code })
        return
      }
      this._pending.delete(m.id)
      this._applyRef()
      if (m.ok === true) {
        p.resolve(m.result)
      } else {
        p.reject(new ManagerError(typeof m.code === 'string' ? m.code : 'error', String(m.error), {
          request: p.type,
          // For `bad_spec`: the spec field at fault, as the supervisor names it.
          field: typeof m.field === 'string' ? m.field : undefined,
        }))
      }
    } else if (m.type === 'event') {
      this.emit('event', m)
      if (typeof m.event === 'string' && !['event', 'close', 'error', 'newListener', 'removeListener'].includes(m.event)) {
        this.emit(m.event, m)
      }
    }
  }

  /** Sends a request to the running supervisor (starting one if `spawnIt`); resolves with its result. */
  async _request(type, fields = {}, { spawnIt = true } = {}) {
    const child = spawnIt ? this._spawn() : this._child
    if (!child) throw new ManagerError('supervisor_exited', 'pm-supervisor is not running')
    const id = this._nextId++
    const msg = { type, id, ...fields }
    let line
    try {
      line = JSON.stringify(msg)
    } catch (err) {
      throw invalidArg(`cannot send this as JSON: ${describeError(err)}`)
    }
    if (Buffer.byteLength(line) > MAX_LINE_BYTES) {
      throw new ManagerError('bad_request', `the ${type} request is ${Buffer.byteLength(line)} bytes of JSON; the limit is ${MAX_LINE_BYTES}`, { request: type })
    }
    return new Promise((resolve, reject) => {
      this._pending.set(id, { type, resolve, reject })
      this._applyRef()
      try {
        child.send(msg, (err) => {
          if (!err) return
          // The channel is closed: the supervisor is exiting. Its 'exit' rejects every pending
          // request with the reason (already_running, ...); this is only the fallback.
          setTimeout(() => {
            if (this._pending.get(id)) {
              this._pending.delete(id)
              this._applyRef()
              reject(new ManagerError('supervisor_exited', `cannot reach pm-supervisor: ${err.message}`, { request: type }))
            }
          }, 2000).unref()
        })
      } catch (err) {
        this._pending.delete(id)
        this._applyRef()
        reject(new ManagerError('supervisor_exited', `cannot reach pm-supervisor: ${describeError(err)}`, { request: type }))
      }
    })
  }

  /**
   * Starts a service; resolves with its row once it is launched (or, with `wait: 'ready'`,
   * once it said it is ready). Relative `cwd` and `log` resolve against process.cwd(). The
   * spec is checked by the supervisor: a bad one rejects with code `bad_spec` and `field`.
   */
  async start(spec, options = {}) {
    if (this._quitting !== null) throw new ManagerError('shutting_down', 'this process is exiting: no new services are started', { request: 'start' })
    if (typeof options !== 'object' || options === null) throw invalidArg(`start options must be an object, got ${describe(options)}`)
    for (const k of Object.keys(options)) {
      if (!['wait', 'timeout'].includes(k)) throw invalidArg(`unknown start option ${JSON.stringify(k)} (known: wait, timeout)`)
    }
    const wait = options.wait === undefined ? 'launched' : options.wait
    if (wait !== 'launched' && wait !== 'ready') throw invalidArg(`wait must be 'launched' or 'ready', got ${describe(wait)}`)
    if (options.timeout !== undefined) checkTimeout('timeout', options.timeout)
    const base = process.cwd()
    if (inElectron()) spec = adaptForElectron(spec, { base, execPath: process.execPath })
    const fields = { spec, base, wait }
    if (options.timeout !== undefined) fields.timeout_ms = options.timeout
    return this._request('start', fields)
  }

  /** Stops every service named `name`; resolves with their rows once their processes are gone. */
  async stop(name) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'stop')
    return this._request('stop', { name }, { spawnIt: false })
  }

  /** Restarts every service named `name`; resolves with their rows once the new processes are launched. */
  async restart(name) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'restart')
    return this._request('restart', { name }, { spawnIt: false })
  }

  /**
   * Stops every service named `name` and forgets it (its id is not reused); resolves with
   * their last rows once their processes are gone.
   */
  async delete(name) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'delete')
    return this._request('delete', { name }, { spawnIt: false })
  }

  /**
   * Everything known about the services named `name`: each one's row with `since`, `started`,
   * `pids` (its live process group), its last `exits` and the `spec` it runs (protocol.md,
   * section 8).
   */
  async describe(name) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'describe')
    const result = await this._request('describe', { name }, { spawnIt: false })
    return result.services
  }

  /** Stops every service; resolves with their rows once every process is gone. */
  async stopall() {
    if (!this._child) return []
    return this._request('stopall', {}, { spawnIt: false })
  }

  /** Every service's row. */
  async list() {
    if (!this._child) return []
    return this._request('list', {}, { spawnIt: false })
  }

  /**
   * The newest lines (at most `lines`; default: every line kept, 1000) the supervisor keeps in
   * memory for the services named `name` whose output goes to its stdout (no `log` file),
   * oldest first: `{ time, service, stream, text }`.
   */
  async logs(name, lines) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'logs')
    const fields = lines === undefined ? { name } : { name, lines }
    const result = await this._request('logs', fields, { spawnIt: false })
    return result.lines
  }

  /**
   * Sends `data` (any JSON value) to every process of the services named `name`; each gets it
   * in `process.on('message')` exactly as sent. Resolves with how many it was queued for.
   */
  async send(name, data) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'send')
    const result = await this._request('send', { name, data: data === undefined ? null : data }, { spawnIt: false })
    return result.sent
  }

  /**
   * Closes the channel of every process of the services named `name`, as a fork parent's
   * `child.disconnect()` does: the child sees 'disconnect' and `process.connected` false, and
   * keeps running. Resolves with how many channels were closed.
   */
  async disconnect(name) {
    checkName(name)
    if (!this._child) throw noSuchService(name, 'disconnect')
    const result = await this._request('disconnect', { name }, { spawnIt: false })
    return result.disconnected
  }

  /**
   * Stops every service and the supervisor; resolves once the supervisor has exited. A later
   * start() runs a new supervisor.
   */
  async shutdown() {
    const child = this._child
    if (!child) return
    const exited = this._exited
    this._shuttingDown++
    this._applyRef()
    try {
      await this._request('shutdown', {}, { spawnIt: false }).catch((err) => {
        // The supervisor ending before it replied is what was asked for.
        if (err.code !== 'supervisor_exited') throw err
      })
      await exited
    } finally {
      this._shuttingDown--
      this._applyRef()
    }
  }

  // --- This process exiting ----------------------------------------------------------------

  /**
   * Registers a handler called when this process is exiting (SIGINT, SIGTERM, process.exit,
   * Electron's quit), before the services are stopped: stop what you run yourself.
   */
  onstopping(fn) {
    if (typeof fn !== 'function') {
      const err = new TypeError(`the stop handler must be a function, got ${fn === null ? 'null' : typeof fn}`)
      err.code = 'ERR_INVALID_ARG_TYPE'
      throw err
    }
    this._stopHandlers.push(fn)
    this._hook()
    return this
  }

  _takeHandlers() {
    if (this._handlersRun) return []
    this._handlersRun = true
    return this._stopHandlers.splice(0)
  }

  /** The exit sequence: handlers (awaited), then every service and the supervisor stopped. Never rejects. */
  _quit(reason) {
    if (this._quitting !== null) return this._quitting
    const limit = this._options.exitTimeout !== undefined ? this._options.exitTimeout : DEFAULT_EXIT_TIMEOUT
    const sequence = (async () => {
      await runStopHandlers(this._takeHandlers(), reportHandlerFailure)
      if (this._child) await this.shutdown()
    })().catch((err) => {
      process.stderr.write(`pm-child/supervisor: stopping the services on ${reason} failed: ${describeError(err)}\n`)
    })
    this._quitting = Promise.race([sequence, delay(limit)])
    this._applyRef()
    return this._quitting
  }

  /** Synchronous, from process 'exit': the handlers that have not run are called, not awaited. */
  _exitNow() {
    const handlers = this._takeHandlers()
    handlers.forEach((fn, i) => {
      try {
        const r = fn()
        if (r && typeof r.then === 'function') r.then(undefined, (err) => reportHandlerFailure(i + 1, err))
      } catch (err) {
        reportHandlerFailure(i + 1, err)
      }
    })
  }
}

/** What to do about a supervisor that cannot run, by its code. */
function hint(code) {
  if (code === 'already_running') return ' (give this manager another name, or make the app single-instance)'
  return ''
}

function reportHandlerFailure(n, err) {
  try {
    process.stderr.write(`pm-child/supervisor: onstopping handler #${n} failed: ${describeError(err)}\n`)
  } catch {
    // Nothing more to do.
  }
}

function checkName(name) {
  if (typeof name !== 'string') {
    const err = new TypeError(`the service name must be a string, got ${describe(name)}`)
    err.code = 'ERR_INVALID_ARG_TYPE'
    throw err
  }
}

function noSuchService(name, request) {
  return new ManagerError('no_such_service', `no service named ${JSON.stringify(name)}`, { request })
}

module.exports = { Manager, ManagerError }
