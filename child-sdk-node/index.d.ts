// Type definitions for pm-child, the child SDK of the pm process supervisor.
//
// The first call of any function below connects to the supervisor (when Node's IPC channel is
// the one pm gave this process). SIGTERM and SIGINT listeners are installed only by the first
// onstopping(), stopRequested() or handlersDone(): until then the process stops exactly as it
// would without the SDK. See README.md and protocol.md, section 9.

/** A JSON value, as it travels on the channel. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/**
 * A stop handler. It may return a Promise, which is awaited before the next handler runs.
 * A handler that throws or rejects is reported on stderr and the next one still runs.
 */
export type StopHandler = () => unknown

/**
 * A message handler: receives each value the controlling process sends, exactly as sent (the
 * same value `process.on('message')` gets). A throw or a rejected Promise is reported on stderr.
 */
export type MessageHandler = (data: JsonValue) => unknown

/**
 * Registers a stop handler.
 *
 * Handlers run once, in registration order, each awaited, on the first of: the supervisor's
 * `stop` message, the supervisor's death (the channel closes), SIGTERM, SIGINT. Handlers
 * registered after the stop began are not run. The first call installs the SDK's SIGTERM and
 * SIGINT listeners (placed before any others).
 *
 * Then the stop goes to the application, which ends the process itself: to its
 * {@link stopRequested} / {@link handlersDone} wait if it has one, else to its own
 * `process.on('SIGTERM')` listeners (a real signal reaches them along with the SDK's; a stop
 * from pm is emitted to them once the handlers are done, or to its SIGINT listeners if it has
 * only those). Otherwise the SDK exits with code 0, once the HTTP responses in flight on servers
 * that were closed have ended and queued channel messages are written. During the stop, HTTP
 * responses not started yet get `Connection: close`, so a server's `close()` ends with its
 * requests in flight, not with its idle keep-alive clients.
 *
 * Under a supervisor the handlers have the service's `killTimeout` before SIGKILL (ask for
 * more with {@link extend}); after the supervisor's death, at most 800 ms.
 *
 * @example
 * pm.onstopping(() => {
 *   server.close() // the SDK lets the requests in flight finish, then exits
 * })
 */
export function onstopping(handler: StopHandler): void

/**
 * Resolves when a stop begins (before the stop handlers run). Calling it makes the application
 * take part in the stop: the SDK installs its SIGTERM and SIGINT listeners as
 * {@link onstopping} does, answers pm's `stop` with `stopping`, and never exits the process
 * itself: the process ends when the application's work is done (its servers closed, its timers
 * cleared), or with its own `process.exit()`. A stop from pm then goes to this wait, not to
 * the application's SIGTERM listeners. Call it before the stop comes.
 *
 * @example
 * await pm.stopRequested()
 * await new Promise((resolve) => server.close(resolve))
 * await db.end() // then nothing holds the event loop: the process exits with code 0
 */
export function stopRequested(): Promise<void>

/** As {@link stopRequested}, but resolves once every stop handler has run. */
export function handlersDone(): Promise<void>

/**
 * Registers a handler for every value the controlling process sends through the supervisor.
 * Never called without a supervisor. The SDK's own listener does not keep the process alive.
 */
export function onmessage(handler: MessageHandler): void

/** Tells the supervisor the service is ready. A no-op without a supervisor. */
export function ready(): void

/**
 * Sends application data to the supervisor, which passes it on to its controlling process
 * exactly as it is (like `process.send(data)`).
 *
 * @param data any value `JSON.stringify` accepts (`undefined` is sent as null)
 * @returns whether it was queued: false without a supervisor, after the channel closed, when
 *   `data` cannot be serialized, or for an object whose `cmd` starts with `NODE_` (reserved for
 *   Node's and pm's own messages). It never throws for those.
 */
export function send(data: unknown): boolean

/**
 * During a stop, asks the supervisor to send SIGKILL no earlier than `ms` milliseconds from
 * now (rounded up to an integer; the supervisor caps it at 30 s after the stop request, or
 * `killTimeout` if longer). Ignored outside a stop; a no-op without a supervisor.
 *
 * @throws RangeError (code `ERR_OUT_OF_RANGE`) when `ms` is negative, NaN or infinite
 */
export function extend(ms: number): void

/**
 * Tells the supervisor's watchdog that the service is alive, and turns the SDK's automatic
 * heartbeats off for good: from then on the service is hung when it has not called this for
 * its `watchdogMs` (PM_WATCHDOG_MS). Without it, a service with a watchdog gets a heartbeat
 * from its event loop every third of `watchdogMs`, from the moment the SDK is loaded: it is
 * hung when its loop has not turned for `watchdogMs`. Cheap: a heartbeat goes out at most once
 * every tenth of `watchdogMs`, however often it is called. A no-op without a supervisor or
 * without a watchdog.
 */
export function heartbeat(): void

/** Whether the process runs under a pm supervisor (its channel was found on first use). */
export function supervised(): boolean
