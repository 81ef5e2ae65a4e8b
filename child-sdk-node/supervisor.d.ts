// Type definitions for pm-child/supervisor, the manager side of the pm process supervisor: an
// Electron main process (or any Node program) runs its services through `pm-supervisor serve`.
// See README.md ("Running services from your app") and protocol.md, section 8.
//
// No dependency on @types/node: the EventEmitter methods a Manager has are declared here.

import type { JsonValue } from './index'

export type { JsonValue }

/**
 * A service: the fields of a config-file service (README of pm, "Running your services").
 * Relative `cwd` and `log` resolve against process.cwd() at the time of start(). The supervisor
 * checks it; a field set to null is not set.
 */
export interface ServiceSpec {
  /** File to run, relative to `cwd`. A bare name that is not a file there is looked up on PATH. */
  script: string
  /** Optional, may repeat: actions by name apply to every service with that name. */
  name?: string
  /** Arguments passed to the script. */
  args?: string[]
  /** Working folder (default: process.cwd()). Inside Electron, a folder in app.asar runs from app.asar.unpacked. */
  cwd?: string
  /** Log file; without it, lines go to the supervisor's stdout. */
  log?: string
  /** Merged over the supervisor's environment. */
  env?: Record<string, string | number | boolean>
  /** Restart delays in ms after a crash; the last one repeats; `[]` or `[0]`: never restart. */
  restartAt?: number[]
  /** ms of uptime after which a crash counts as a first crash again (default 30 min). */
  restartOk?: number
  /** Remove ANSI escape sequences from the output. */
  stripANSI?: boolean
  /** Overrides the launcher chosen by the script's extension. */
  interpreter?: string
  /** Node binary for `.js`/`.mjs`/`.cjs` (default `node` on PATH; inside Electron, Electron's own binary as Node). */
  nodePath?: string
  /** ms between the stop request and SIGKILL (default 200). */
  killTimeout?: number
  /** Rotate the log file past this many bytes; 0: never. */
  logMaxSize?: number
  /** Rotated log files kept (at most 1000). */
  logKeep?: number
  /**
   * Watchdog: the service must send a heartbeat at least every this many ms (100 to 2^31 - 1),
   * or it is logged as hung, stopped and started again on its `restartAt` schedule (`hung`
   * event). The pm SDKs send them by themselves (PM_WATCHDOG_MS); protocol.md, section 6.5.
   */
  watchdogMs?: number
  /**
   * Memory ceiling of the service's process group (total RSS): bytes, or a string with a unit
   * such as `"500M"`. A service that stays above it is restarted (`memory` event).
   */
  maxMemory?: number | string
  /** Names of services that must be ready (or running, if they never say ready) before this one starts; stopped after it. */
  dependsOn?: string[]
  /** Restart the service when its files change (`true`), or when these paths or globs change. For development. */
  watch?: boolean | string[]
}

export interface StartOptions {
  /** Resolve once the process is launched (default), or once it said it is ready. */
  wait?: 'launched' | 'ready'
  /** With `wait: 'ready'`: ms to wait (default 10000); then the call rejects with code `timeout` and the service keeps running. */
  timeout?: number
}

export type ServiceState = 'starting' | 'running' | 'stopping' | 'waiting' | 'stopped' | 'exited' | 'failed'

/** A line a service wrote, as `logs()` answers it. */
export interface LogLine {
  /** When the supervisor read it: RFC 3339, UTC, milliseconds. */
  time: string
  /** The service's name, or its pid for a nameless service. */
  service: string
  /** `out`, `err`, or `pm` (the supervisor's own lines about the service). */
  stream: 'out' | 'err' | 'pm'
  /** The line without its newline; bytes that are not UTF-8 as U+FFFD. */
  text: string
  /** A part of a line longer than 64 KiB, continued by the next line. */
  continued?: boolean
}

/** A row of the supervisor's process table. */
export interface ServiceRow {
  /** The service's id, for the life of the supervisor (across restarts). */
  id: number
  name: string | null
  /** Its current process, or null when it has none. */
  pid: number | null
  state: ServiceState
  /** Whether the current process said it is ready. */
  ready: boolean
  /** Processes launched after the first one. */
  restarts: number
  /** Crashes in a row. */
  crashes: number
  uptime_ms: number | null
  /** ms until a pending restart. */
  restart_in_ms: number | null
  /** How the last process ended: `exit code 1`, `signal SIGKILL`. */
  last_exit: string | null
  /** Why the last launch failed. */
  error: string | null
  /** Resident memory of the process group (the process and its descendants in its group), in
   *  bytes (Linux). */
  memory: number | null
  /** CPU use of the process group, in percent of one core, since the previous `list()` (the
   *  first one: since the process started); above 100 when several cores are busy (Linux). */
  cpu?: number | null
  /** Its log file, or null for the supervisor's stdout. */
  log: string | null
  /** Its `watchdogMs` (only for a service with a watchdog). */
  watchdog_ms?: number
  /** Its `maxMemory` in bytes (only for a service with a memory ceiling). */
  max_memory?: number
  /** Its `dependsOn` (only when it has some). */
  depends_on?: string[]
  /** The services of `dependsOn` not up yet, while it waits for them to start. */
  waiting_for?: string[]
  /** Whether watch mode restarts it (only when it does). */
  watch?: boolean
  /** Times the watchdog found it hung and restarted it (left out while 0). */
  hangs?: number
  /** Times it was restarted for staying above `maxMemory` (left out while 0). */
  memory_restarts?: number
  /** The last restart the supervisor decided on its own (left out while there is none). */
  last_guard?: GuardRestart
}

/** A restart the supervisor decided on its own (ServiceRow.last_guard). */
export interface GuardRestart {
  why: 'hung' | 'memory' | 'watch'
  /** RFC 3339 UTC time with milliseconds. */
  time: string
  /** What it saw: `no heartbeat for 1040 ms`, `RSS 612.0 MiB`, `src/app.js`. */
  detail: string
}

/** One of a service's last exits (ServiceDescription.exits). */
export interface ServiceExit {
  /** RFC 3339 UTC time with milliseconds. */
  time: string
  pid: number
  /** `exit code 1`, `signal SIGKILL`. */
  exit: string
  code: number | null
  signal: string | null
  /** A stop or restart asked for it (not a crash). */
  requested: boolean
  uptime_ms: number
}

/** Everything known about a service (Manager#describe): its row and more. */
export interface ServiceDescription extends ServiceRow {
  /** When it entered its `state` (RFC 3339 UTC). */
  since: string
  /** When its current process started, or null without one. */
  started: string | null
  /** The live members of its current process group, the process first. */
  pids: number[]
  /** Its last exits, at most 5, the latest last. */
  exits: ServiceExit[]
  /** The spec it runs, with paths resolved and defaults filled in. */
  spec: { [field: string]: JsonValue }
}

interface EventBase {
  type: 'event'
  /** The service's id (ServiceRow.id). */
  service: number
  name: string | null
  /** RFC 3339 UTC time with milliseconds. */
  time: string
}

export interface StartedEvent extends EventBase { event: 'started'; pid: number }
export interface ReadyEvent extends EventBase { event: 'ready'; pid: number }
export interface StoppingEvent extends EventBase { event: 'stopping'; pid: number; reason: 'stop' | 'restart' | 'shutdown' }
export interface ExitedEvent extends EventBase {
  event: 'exited'
  pid: number
  /** `exit code 0`, `signal SIGKILL`. */
  exit: string
  /** Whether it was asked to stop (false: it crashed). */
  requested: boolean
  uptime_ms: number
}
export interface LaunchFailedEvent extends EventBase { event: 'launch_failed'; error: string }
export interface RestartingEvent extends EventBase { event: 'restarting'; in_ms: number; crashes?: number }
/** Data a service sent (`process.send(data)`, or `pm.send(data)` in the child SDK), exactly as sent. */
export interface MessageEvent extends EventBase { event: 'message'; pid: number; data: JsonValue }
/** The watchdog found the process hung: no heartbeat for `silence_ms` (`watchdogMs`: `watchdog_ms`); a `stopping` event follows. */
export interface HungEvent extends EventBase { event: 'hung'; pid: number; silence_ms: number; watchdog_ms: number }
/** The process group stayed above `maxMemory` (`max_memory` bytes) for `for_ms`, at `rss` bytes; a `stopping` event follows. */
export interface MemoryEvent extends EventBase { event: 'memory'; pid: number; rss: number; max_memory: number; for_ms: number }
/** Events were dropped because this process did not read them fast enough. */
export interface LaggedEvent { type: 'event'; event: 'lagged'; missed: number }

/** Every event the supervisor pushes (protocol.md section 8.3). */
export type ServiceEvent =
  | StartedEvent | ReadyEvent | StoppingEvent | ExitedEvent | LaunchFailedEvent | RestartingEvent | MessageEvent
  | HungEvent | MemoryEvent | LaggedEvent

/** The supervisor process ended. `expected`: by shutdown() or this process exiting. */
export interface CloseInfo {
  code: number | null
  signal: string | null
  expected: boolean
  /** When not expected: why, as the error pending calls were rejected with. */
  error: ManagerError | null
}

/** Listener signatures by event name. */
export interface ManagerEvents {
  event: (e: ServiceEvent) => void
  started: (e: StartedEvent) => void
  ready: (e: ReadyEvent) => void
  stopping: (e: StoppingEvent) => void
  exited: (e: ExitedEvent) => void
  launch_failed: (e: LaunchFailedEvent) => void
  restarting: (e: RestartingEvent) => void
  message: (e: MessageEvent) => void
  hung: (e: HungEvent) => void
  memory: (e: MemoryEvent) => void
  lagged: (e: LaggedEvent) => void
  close: (info: CloseInfo) => void
}

/**
 * `code` values: those of protocol.md section 8.2 (`bad_request`, `bad_spec`, `no_such_service`,
 * `timeout`, `launch_failed`, `shutting_down`); those of a supervisor that cannot run (section
 * 8.6: `already_running`, another supervisor runs this instance name; `bad_instance_name`, the
 * supervisor refuses the name; `bad_config`; `runtime_folder`, its runtime folder cannot be
 * used); and the manager's own: `not_unpacked` (a path in app.asar has no unpacked copy),
 * `supervisor_not_found`, `supervisor_exited`.
 */
export type ErrorCode =
  | 'bad_request' | 'bad_spec' | 'no_such_service' | 'timeout' | 'launch_failed' | 'shutting_down'
  | 'already_running' | 'bad_instance_name' | 'bad_config' | 'runtime_folder'
  | 'not_unpacked' | 'supervisor_not_found' | 'supervisor_exited'

/** What every manager call rejects with (bad arguments are TypeErrors instead). */
export class ManagerError extends Error {
  constructor(code: ErrorCode, message: string, extra?: { field?: string; request?: string })
  code: ErrorCode | (string & {})
  /**
   * For `bad_spec` and `not_unpacked`: the spec field at fault (`cwd`, `env.PORT`, `args[1]`),
   * as the supervisor's reply names it; `''` for the spec as a whole.
   */
  field?: string
  /** The request that failed (`start`, `stop`, ...). */
  request?: string
}

/** Where a supervisor's stdout or stderr goes: never a pipe to this process. */
export type SupervisorOutput = 'inherit' | 'ignore' | number | { readonly fd?: number | null }

export interface ManagerOptions {
  /**
   * The pm-supervisor binary. Default: $PM_SUPERVISOR_BIN, else the one in the installed
   * platform package (`@pm-child/linux-x64-gnu` and so on, an optional dependency of pm-child).
   * A path inside app.asar is run from app.asar.unpacked.
   */
  supervisorPath?: string
  /**
   * Instance name, for the control socket (`pm-supervisor ls --instance NAME`), the lock and the
   * cleanup after a crash: 1 to 64 letters, digits, '-', '_' and '.', not starting with '.' or
   * '-' (the supervisor's rule: another name fails the first start() with code
   * `bad_instance_name`). Default: Electron's app name, else the main script's name and a hash
   * of its path, made to fit.
   */
  name?: string
  /** The supervisor's environment, which its services inherit (default process.env). */
  env?: Record<string, string | undefined>
  /** Where services without a `log` write (default 'inherit'). */
  stdout?: SupervisorOutput
  /** Where the supervisor's own diagnostics go (default 'inherit'). */
  stderr?: SupervisorOutput
  /** Run onstopping handlers and stop everything when this process exits (default true). */
  exitHooks?: boolean
  /** Bound in ms for onstopping handlers plus stopping the services at exit (default 10000). */
  exitTimeout?: number
  /** Electron's `app` (default: require('electron').app in an Electron main process); null for none. */
  app?: ElectronAppLike | null
}

/** The part of Electron's `app` the manager uses. */
export interface ElectronAppLike {
  getName(): string
  quit(): void
  on(event: 'before-quit' | 'will-quit', listener: (event: { preventDefault(): void }) => void): unknown
}

/** A handler run when this process is exiting; a returned Promise is awaited (not at process.exit). */
export type StopHandler = () => unknown

/**
 * Runs services through its own `pm-supervisor serve`, started on the first start(). When this
 * process dies, even by SIGKILL, the supervisor stops every service and exits.
 * An EventEmitter (node:events) at run time.
 */
export class Manager {
  constructor(options?: ManagerOptions)
  /** The instance name. */
  readonly name: string
  /** The supervisor's pid while one runs, else null. */
  readonly pid: number | null
  /** The binary of the running (or last) supervisor, else null. */
  readonly supervisorPath: string | null

  /** Starts a service; resolves with its row once launched, or once ready with `wait: 'ready'`. */
  start(spec: ServiceSpec, options?: StartOptions): Promise<ServiceRow>
  /** Stops every service named `name`; resolves with their rows once their processes are gone. */
  stop(name: string): Promise<ServiceRow[]>
  /** Restarts every service named `name`; resolves with their rows once the new processes are launched. */
  restart(name: string): Promise<ServiceRow[]>
  /** Stops every service named `name` and forgets it; resolves with their last rows once their processes are gone. */
  delete(name: string): Promise<ServiceRow[]>
  /** Everything known about the services named `name`: rows with `since`, `started`, `pids`, `exits` and `spec`. */
  describe(name: string): Promise<ServiceDescription[]>
  /** Stops every service; resolves with every row once every process is gone. */
  stopall(): Promise<ServiceRow[]>
  /** Every service's row. */
  list(): Promise<ServiceRow[]>
  /**
   * The newest lines (at most `lines`; default: every line kept, 1000) the supervisor keeps in
   * memory for the services named `name` whose output goes to its stdout (no `log` file),
   * oldest first.
   */
  logs(name: string, lines?: number): Promise<LogLine[]>
  /**
   * Sends `data` (any JSON value; `undefined` is sent as null) to every process of the services
   * named `name`, which gets it in `process.on('message')` exactly as sent; resolves with how
   * many it was queued for. An object whose `cmd` starts with `NODE_` is refused
   * (`bad_request`): that form is Node's and pm's own.
   */
  send(name: string, data: unknown): Promise<number>
  /**
   * Closes the channel of every process of the services named `name`, as a fork parent's
   * `child.disconnect()` does; the processes keep running. Resolves with how many were closed.
   */
  disconnect(name: string): Promise<number>
  /** Stops every service and the supervisor; resolves once it has exited. A later start() runs a new one. */
  shutdown(): Promise<void>
  /**
   * Registers a handler for when this process exits (SIGINT, SIGTERM, process.exit, Electron's
   * quit), run before the services are stopped: stop what you run yourself.
   */
  onstopping(handler: StopHandler): this
  /** Lets this process exit while the supervisor runs (its services then stop). */
  unref(): this
  /** The running supervisor keeps this process alive (the default). */
  ref(): this

  on<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): this
  once<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): this
  off<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): this
  addListener<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): this
  removeListener<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): this
  removeAllListeners(event?: keyof ManagerEvents): this
  listenerCount(event: keyof ManagerEvents): number
}

// The default manager, made on first use; its supervisor starts with the first start().

/** The default manager. */
export function defaultManager(): Manager
export function start(spec: ServiceSpec, options?: StartOptions): Promise<ServiceRow>
export function stop(name: string): Promise<ServiceRow[]>
export function restart(name: string): Promise<ServiceRow[]>
declare function deleteServices(name: string): Promise<ServiceRow[]>
export { deleteServices as delete }
export function describe(name: string): Promise<ServiceDescription[]>
export function stopall(): Promise<ServiceRow[]>
export function list(): Promise<ServiceRow[]>
export function send(name: string, data: unknown): Promise<number>
export function disconnect(name: string): Promise<number>
export function shutdown(): Promise<void>
export function onstopping(handler: StopHandler): Manager
export function on<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): Manager
export function once<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): Manager
export function off<K extends keyof ManagerEvents>(event: K, listener: ManagerEvents[K]): Manager
export function ref(): Manager
export function unref(): Manager

/**
 * The pm-supervisor binary the manager would run: the `supervisorPath` option, else
 * $PM_SUPERVISOR_BIN (from `env`, default process.env), else the installed platform package of
 * pm-child's version (its app.asar.unpacked copy inside a packaged Electron app).
 * @throws ManagerError with code `supervisor_not_found`, naming the platform, the package that
 * would have provided the binary and how to supply one
 */
export function findSupervisor(options?: { supervisorPath?: string; env?: Record<string, string | undefined> }): string
/** The default instance name (see ManagerOptions.name). */
export function defaultName(options?: { app?: { getName(): string } | null; main?: string }): string
/** `.../app.asar/x` -> `.../app.asar.unpacked/x`; other paths resolved but unchanged. */
export function unpackedPath(path: string): string
/** Whether a path is an asar archive or inside one. */
export function insideAsar(path: string): boolean
