// Type definitions for pm-child, the child SDK of the pm process supervisor.
//
// The first call of any function below connects to the supervisor (when Node's IPC channel is
// the one pm gave this process) and installs SIGTERM and SIGINT listeners. See README.md and
// protocol.md, section 9.

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
 * `stop` message, the supervisor's death (the channel closes), SIGTERM, SIGINT. When all have
 * run and queued channel messages are written, the process exits with code 0. Handlers
 * registered after the stop began are not run.
 *
 * Under a supervisor the handlers have the service's `killTimeout` before SIGKILL (ask for
 * more with {@link extend}); after the supervisor's death, at most 800 ms.
 *
 * @example
 * pm.onstopping(async () => { await server.close() })
 */
export function onstopping(handler: StopHandler): void

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

/** Whether the process runs under a pm supervisor (its channel was found on first use). */
export function supervised(): boolean
