import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  type Connection,
  type ConnectionHandler,
  DEFAULT_HIGH_WATER_MARK_BYTES,
  nextConnectionId,
  publishClose,
  publishOpen,
} from './connection.js';
import { TransportError, toSocketError } from './errors.js';
import type { TlsDetails, TransportProtocol } from './options.js';

/** @internal Something with a write queue to hand to the socket. */
export interface Flushable {
  flush(): void;
  destroy(error?: Error): void;
}

// One setImmediate for all connections, not one per connection: a fan-out to 10 000 subscribers
// schedules a single callback. setImmediate rather than process.nextTick because it runs after the
// poll phase, so the writes caused by every socket read in that phase (several inbound packets, each
// fanned out) join one batch per connection; nextTick would flush after each single read callback.
// The lists are reused with a count rather than emptied (`length = 0` would drop their storage, to be
// grown again on the next turn).
let dirty: Array<Flushable | undefined> = [];
let dirtyCount = 0;
let spare: Array<Flushable | undefined> = [];
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  const list = dirty;
  const count = dirtyCount;
  dirty = spare;
  dirtyCount = 0;
  for (let i = 0; i < count; i++) {
    const item = list[i]!;
    list[i] = undefined;
    try {
      item.flush();
    } catch (error) {
      // One broken connection must not keep the others from being flushed.
      item.destroy(toSocketError(error, undefined));
    }
  }
  spare = list;
}

/** @internal Queues `item.flush()` for the end of this event-loop turn. */
export function scheduleFlush(item: Flushable): void {
  dirty[dirtyCount++] = item;
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushAll);
  }
}

/** Shared, never written: the write queue of every connection with nothing queued. */
const NO_QUEUE: Uint8Array[] = [];

// Bits of BufferedConnection.bits.
const RAW_IS_WRAPPED = 1;
const FLUSH_PENDING = 2;
const NEED_DRAIN = 4;
const CLOSE_DELIVERED = 8;
const PAUSED = 16;
const READING = 32;

/** How long `end()` waits for the peer to close when `lingerSeconds` is unset. */
export const DEFAULT_END_GRACE_MS = 5000;

/** @internal Concatenates a batch. */
export function concatBatch(queue: readonly Uint8Array[], total: number): Uint8Array {
  return Buffer.concat(queue as Uint8Array[], total);
}

/** @internal Inbound flow control of the stream: `net.Socket` and `ws`'s WebSocket alike. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/** @internal What every buffered connection is told at construction. */
export interface BufferedConnectionSettings {
  protocol: TransportProtocol;
  tls: TlsDetails | undefined;
  /** The TCP socket: addresses come from it, and an RST (lingerSeconds 0) is sent on it. */
  raw: Socket;
  /** True when `raw` carries TLS: resetting it under a live TLS socket crashes Node 20, so no RST then. */
  rawIsWrapped: boolean;
  /** What reads the stream: paused until `setHandler()`, then following `pause()`/`resume()`. */
  reader: Pausable;
  highWaterMarkBytes: number | undefined;
  lingerSeconds: number | undefined;
  listenerName: string | undefined;
  /** Called once when the stream has closed, before `onClose` (listener bookkeeping). */
  onClosed: ((connection: BufferedConnection) => void) | undefined;
  /** The local end when the listener knows it (bound to one address); otherwise asked of `raw`. */
  localAddress?: string | undefined;
  localPort?: number | undefined;
}

/**
 * @internal What a Connection over a byte stream does whatever the stream: handler attachment before
 * data flows, the write queue flushed once per event-loop turn, high/low water marks and drain,
 * pause/resume bookkeeping, `end()` with a grace timer, `destroy()`, the connect timer and delivering
 * `onClose` exactly once. Subclasses say how many bytes the stream still buffers, how a batch is handed
 * over and how the stream ends or is destroyed; the base pauses and resumes their `reader`. They feed
 * inbound chunks to `receive()` and call `streamClosed()` once the stream is gone.
 */
export abstract class BufferedConnection implements Connection, Flushable {
  readonly id: string;
  readonly protocol: TransportProtocol;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tls: TlsDetails | undefined;

  protected readonly listenerName: string | undefined;
  /** Set once `end()` was called: nothing more is written or delivered, reading goes on until the close. */
  protected ending = false;
  /** Set once `destroy()` was called (or the end grace ran out). */
  protected destroyed = false;
  /** Set once the stream has closed; from then on nothing happens but delivering `onClose`. */
  protected hasClosed = false;
  /** The error `onClose` will get; the first one wins. */
  protected closeError: Error | undefined = undefined;
  protected handler: ConnectionHandler | undefined = undefined;

  private readonly raw: Socket;
  private readonly highWater: number;
  private readonly lowWater: number;
  private readonly lingerSeconds: number | undefined;
  private readonly onClosed: ((connection: BufferedConnection) => void) | undefined;
  /** What `write()` queued this turn; the shared empty array when nothing is (idle connections). */
  private queue: Uint8Array[] = NO_QUEUE;
  private queuedBytes = 0;
  /** The flags below, one bit each: a field per flag would cost 8 bytes per connection. */
  private bits = 0;
  /**
   * While waiting for the first byte: when the connect timeout expires (ms on the `performance.now()`
   * clock, rounded up), and the neighbours in the list of waiting connections; 0 otherwise.
   */
  private connectDeadline = 0;
  private prevWaiting: BufferedConnection | undefined = undefined;
  private nextWaiting: BufferedConnection | undefined = undefined;
  private endTimer: NodeJS.Timeout | undefined = undefined;

  constructor(settings: BufferedConnectionSettings) {
    this.id = nextConnectionId();
    const raw = settings.raw;
    this.raw = raw;
    if (settings.rawIsWrapped) this.bits = RAW_IS_WRAPPED;
    // Nothing is read before setHandler(). Paused before the subclass attaches its 'data' or 'message'
    // listener, which then does not start the flow (a socket accepted with pauseOnConnect is paused anyway).
    settings.reader.pause();
    this.protocol = settings.protocol;
    this.tls = settings.tls;
    // Asking the socket makes Node keep an object and a string per socket: a listener bound to one
    // address says what it is instead (one string for all its connections).
    this.localAddress = settings.localAddress ?? raw.localAddress ?? '';
    this.localPort = settings.localPort ?? raw.localPort ?? 0;
    this.remoteAddress = raw.remoteAddress ?? '';
    this.remotePort = raw.remotePort ?? 0;
    this.highWater = settings.highWaterMarkBytes ?? DEFAULT_HIGH_WATER_MARK_BYTES;
    this.lowWater = this.highWater >>> 1;
    this.lingerSeconds = settings.lingerSeconds;
    this.listenerName = settings.listenerName;
    this.onClosed = settings.onClosed;
  }

  // ---- Flags ----

  private get rawIsWrapped(): boolean {
    return (this.bits & RAW_IS_WRAPPED) !== 0;
  }
  /** A flush is scheduled for this turn. */
  private get flushPending(): boolean {
    return (this.bits & FLUSH_PENDING) !== 0;
  }
  private set flushPending(value: boolean) {
    this.bits = value ? this.bits | FLUSH_PENDING : this.bits & ~FLUSH_PENDING;
  }
  /** `write()` returned false: `onDrain` is owed. */
  private get needDrain(): boolean {
    return (this.bits & NEED_DRAIN) !== 0;
  }
  private set needDrain(value: boolean) {
    this.bits = value ? this.bits | NEED_DRAIN : this.bits & ~NEED_DRAIN;
  }
  private get closeDelivered(): boolean {
    return (this.bits & CLOSE_DELIVERED) !== 0;
  }
  private set closeDelivered(value: boolean) {
    this.bits = value ? this.bits | CLOSE_DELIVERED : this.bits & ~CLOSE_DELIVERED;
  }
  /** `pause()` was called (and no `resume()` since). */
  private get paused(): boolean {
    return (this.bits & PAUSED) !== 0;
  }
  private set paused(value: boolean) {
    this.bits = value ? this.bits | PAUSED : this.bits & ~PAUSED;
  }
  /** The reader follows `paused`: set once a handler is attached (or `end()` reads to the close). */
  private get reading(): boolean {
    return (this.bits & READING) !== 0;
  }
  private set reading(value: boolean) {
    this.bits = value ? this.bits | READING : this.bits & ~READING;
  }

  // ---- What differs between streams ----

  /** What reads the stream (the `reader` of the settings), kept by the subclass. */
  protected abstract get reader(): Pausable;
  /** Bytes the stream still holds that the kernel has not taken (`writableLength`, `bufferedAmount`). */
  protected abstract streamBufferedBytes(): number;
  /** False when the stream can no longer take bytes (the batch is then dropped). */
  protected abstract canSend(): boolean;
  /** Hands over one batch: `count` ≥ 1 chunks, `total` bytes. The connection does not reuse the array. */
  protected abstract send(queue: readonly Uint8Array[], count: number, total: number): void;
  /** Starts the orderly close (FIN, close frame); reading goes on so the peer's close is seen. */
  protected abstract endStream(): void;
  /** Closes the stream at once (after an RST on `raw`, when one was asked for). */
  protected abstract destroyStream(): void;

  // ---- Connection ----

  get bufferedBytes(): number {
    return this.queuedBytes + this.streamBufferedBytes();
  }

  get isClosed(): boolean {
    return this.ending || this.destroyed || this.hasClosed;
  }

  setHandler(handler: ConnectionHandler): void {
    this.handler = handler;
    if (this.hasClosed) {
      if (!this.closeDelivered) process.nextTick(BufferedConnection.deliverClose, this);
      return;
    }
    if (!this.reading) {
      this.reading = true;
      if (!this.paused) this.reader.resume();
    }
  }

  write(bytes: Uint8Array): boolean {
    if (this.ending || this.destroyed || this.hasClosed) return false;
    if (this.queue === NO_QUEUE) this.queue = [bytes];
    else this.queue.push(bytes);
    this.queuedBytes += bytes.byteLength;
    if (!this.flushPending) {
      this.flushPending = true;
      scheduleFlush(this);
    }
    if (this.queuedBytes + this.streamBufferedBytes() > this.highWater) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** @internal Hands the queued batch to the stream; called once per turn by the scheduler. */
  flush(): void {
    this.flushPending = false;
    const queue = this.queue;
    const count = queue.length;
    if (count === 0) return;
    const total = this.queuedBytes;
    this.queuedBytes = 0;
    this.queue = NO_QUEUE;
    if (this.destroyed || !this.canSend()) return;
    this.send(queue, count, total);
    // The kernel may take the whole batch at once, in which case no 'drain' event will come.
    if (this.needDrain && this.streamBufferedBytes() <= this.lowWater) this.emitDrain();
  }

  pause(): void {
    this.paused = true;
    if (this.reading) this.reader.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.reading && !this.ending) this.reader.resume();
  }

  end(): void {
    if (this.ending || this.destroyed || this.hasClosed) return;
    this.flush();
    this.ending = true;
    this.clearConnectTimer();
    // Keep reading (and discarding) so the peer's close is seen and unread input does not turn our
    // close into an RST that could discard the bytes just sent.
    this.reading = true;
    this.endStream();
    this.reader.resume();
    const linger = this.lingerSeconds;
    const graceMs = linger !== undefined && linger > 0 ? linger * 1000 : DEFAULT_END_GRACE_MS;
    this.endTimer = setTimeout(BufferedConnection.onEndTimeout, graceMs, this);
    this.endTimer.unref();
  }

  destroy(error?: Error): void {
    if (this.destroyed || this.hasClosed) return;
    this.destroyed = true;
    if (error !== undefined && this.closeError === undefined) this.closeError = error;
    this.queue = NO_QUEUE;
    this.queuedBytes = 0;
    this.clearTimers();
    if (this.lingerSeconds === 0) this.resetRaw();
    this.destroyStream();
  }

  // ---- For subclasses ----

  /** Starts the connect timeout (0 = off) and announces the connection; call last in the constructor. */
  protected opened(connectTimeoutMs: number): void {
    if (connectTimeoutMs > 0) {
      BufferedConnection.waitForData(this, Math.ceil(performance.now()) + connectTimeoutMs);
    }
    publishOpen(this);
  }

  /** Passes an inbound chunk to the handler (dropped when there is none yet, or after end/destroy). */
  protected receive(chunk: Buffer): void {
    if (this.connectDeadline !== 0) BufferedConnection.stopWaiting(this);
    if (this.ending || this.destroyed) return;
    const handler = this.handler;
    if (handler === undefined) return;
    try {
      handler.onData(chunk);
    } catch (error) {
      // A throwing receiver closes its own connection, never the listener or the process.
      this.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Stops the connect timer: the peer has shown life. */
  protected clearConnectTimer(): void {
    if (this.connectDeadline !== 0) BufferedConnection.stopWaiting(this);
  }

  /** Records the error `onClose` will get, unless there already is one. */
  protected noteError(error: Error): void {
    if (this.closeError === undefined) this.closeError = error;
  }

  /** The stream has closed: listener bookkeeping, the close channel, then `onClose` (once). */
  protected streamClosed(): void {
    if (this.hasClosed) return;
    this.hasClosed = true;
    this.clearTimers();
    this.queue = NO_QUEUE;
    this.queuedBytes = 0;
    this.onClosed?.(this);
    publishClose(this, this.closeError);
    if (this.handler !== undefined) BufferedConnection.deliverClose(this);
  }

  /** The stream can take more; `onDrain` if the total is back to the low-water mark. */
  protected streamDrained(): void {
    if (this.needDrain && this.queuedBytes + this.streamBufferedBytes() <= this.lowWater) this.emitDrain();
  }

  // ---- Internals ----

  /** Closes the TCP socket with an RST. Not under TLS (see `rawIsWrapped`): the stream's close does it. */
  private resetRaw(): void {
    const raw = this.raw;
    if (this.rawIsWrapped || raw.destroyed) return;
    try {
      raw.resetAndDestroy();
    } catch {
      // Not a TCP handle (e.g. a unix socket): a plain close is the best there is.
      raw.destroy();
    }
  }

  private emitDrain(): void {
    this.needDrain = false;
    this.handler?.onDrain();
  }

  private clearTimers(): void {
    this.clearConnectTimer();
    if (this.endTimer !== undefined) {
      clearTimeout(this.endTimer);
      this.endTimer = undefined;
    }
  }

  // Timer and nextTick callbacks are static and get the connection as their argument: one function
  // for all connections instead of a bound closure (plus its context) kept by each one.

  // Connect timeouts: the connections waiting for their first byte form one list in deadline order,
  // linked through themselves, and one Node timer serves them all (a timer per connection would be a
  // Timeout object per connection, and a list of timers per distinct duration).

  private static firstWaiting: BufferedConnection | undefined = undefined;
  private static lastWaiting: BufferedConnection | undefined = undefined;
  private static deadlineTimer: NodeJS.Timeout | undefined = undefined;
  private static deadlineTimerDueAt = 0;

  private static waitForData(connection: BufferedConnection, deadline: number): void {
    connection.connectDeadline = deadline;
    // Deadlines mostly come in order (one timeout per listener): the place is found from the end.
    let before = BufferedConnection.lastWaiting;
    while (before !== undefined && before.connectDeadline > deadline) before = before.prevWaiting;
    const after = before === undefined ? BufferedConnection.firstWaiting : before.nextWaiting;
    connection.prevWaiting = before;
    connection.nextWaiting = after;
    if (before === undefined) BufferedConnection.firstWaiting = connection;
    else before.nextWaiting = connection;
    if (after === undefined) BufferedConnection.lastWaiting = connection;
    else after.prevWaiting = connection;
    if (before === undefined) BufferedConnection.armDeadlineTimer(deadline);
  }

  private static stopWaiting(connection: BufferedConnection): void {
    const { prevWaiting: before, nextWaiting: after } = connection;
    if (before === undefined) BufferedConnection.firstWaiting = after;
    else before.nextWaiting = after;
    if (after === undefined) BufferedConnection.lastWaiting = before;
    else after.prevWaiting = before;
    connection.connectDeadline = 0;
    connection.prevWaiting = undefined;
    connection.nextWaiting = undefined;
    // The timer stays as it is: when it finds nothing due, it is set for the new first deadline.
  }

  /** Makes sure the timer fires by `dueAt`. */
  private static armDeadlineTimer(dueAt: number): void {
    const timer = BufferedConnection.deadlineTimer;
    if (timer !== undefined) {
      if (BufferedConnection.deadlineTimerDueAt <= dueAt) return;
      clearTimeout(timer);
    }
    BufferedConnection.deadlineTimerDueAt = dueAt;
    const delayMs = Math.max(1, Math.ceil(dueAt - performance.now()));
    BufferedConnection.deadlineTimer = setTimeout(BufferedConnection.onDeadlines, delayMs);
    BufferedConnection.deadlineTimer.unref();
  }

  private static onDeadlines(): void {
    BufferedConnection.deadlineTimer = undefined;
    const now = performance.now();
    let connection = BufferedConnection.firstWaiting;
    while (connection !== undefined && connection.connectDeadline <= now) {
      BufferedConnection.stopWaiting(connection);
      connection.destroy(
        new TransportError('TRANSPORT_CONNECT_TIMEOUT', 'no data received within the connect timeout', {
          listener: connection.listenerName,
        }),
      );
      connection = BufferedConnection.firstWaiting;
    }
    if (connection !== undefined) BufferedConnection.armDeadlineTimer(connection.connectDeadline);
  }

  private static onEndTimeout(connection: BufferedConnection): void {
    connection.endTimer = undefined;
    if (connection.hasClosed) return;
    connection.destroyed = true;
    connection.resetRaw();
    connection.destroyStream();
  }

  private static deliverClose(connection: BufferedConnection): void {
    if (connection.closeDelivered) return;
    const handler = connection.handler;
    if (handler === undefined) return;
    connection.closeDelivered = true;
    handler.onClose(connection.closeError);
  }
}
