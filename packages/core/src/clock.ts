import type { Clock } from './ports.js';

interface TimerHandle {
  unref?(): void;
}
const timers = globalThis as unknown as {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: unknown): void;
  setInterval(callback: () => void, ms: number): TimerHandle;
  clearInterval(handle: unknown): void;
  performance: { now(): number };
};

/** The real clock. Its timers do not keep a Node process alive on their own. */
export const systemClock: Clock = {
  now: () => timers.performance.now(),
  setTimeout(callback, delayMs) {
    const handle = timers.setTimeout(callback, delayMs);
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => timers.clearTimeout(handle),
  setInterval(callback, intervalMs) {
    const handle = timers.setInterval(callback, intervalMs);
    handle.unref?.();
    return handle;
  },
  clearInterval: (handle) => timers.clearInterval(handle),
};

interface ManualTimer {
  id: number;
  dueMs: number;
  intervalMs: number;
  callback: () => void;
}

/**
 * A clock that moves only when told: `advance(ms)` runs every timer that falls due, in order. For
 * tests of keep-alive and timeouts without sleeping.
 */
export class ManualClock implements Clock {
  private nowMs: number;
  private nextId = 1;
  private readonly timers = new Map<number, ManualTimer>();

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(callback: () => void, delayMs: number): unknown {
    return this.add(callback, delayMs, 0);
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  setInterval(callback: () => void, intervalMs: number): unknown {
    return this.add(callback, intervalMs, Math.max(1, intervalMs));
  }

  clearInterval(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves time forward by `ms`, running due timers in order of their due time. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const timer of this.timers.values()) {
        if (timer.dueMs <= target && (next === undefined || timer.dueMs < next.dueMs)) next = timer;
      }
      if (next === undefined) break;
      this.nowMs = Math.max(this.nowMs, next.dueMs);
      if (next.intervalMs > 0) next.dueMs += next.intervalMs;
      else this.timers.delete(next.id);
      next.callback();
    }
    this.nowMs = target;
  }

  /** Timers waiting to fire. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  private add(callback: () => void, delayMs: number, intervalMs: number): number {
    const id = this.nextId++;
    this.timers.set(id, { id, dueMs: this.nowMs + Math.max(0, delayMs), intervalMs, callback });
    return id;
  }
}
