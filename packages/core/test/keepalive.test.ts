import { describe, expect, it } from 'vitest';
import { collect, connected, makeBroker } from './helpers/harness.js';

describe('keep-alive [MQTT-3.1.2-24]', () => {
  it('[MQTT-3.1.2-24] closes a client silent for 1.5 x keep-alive, not before (CORE_KEEPALIVE_TIMEOUT)', () => {
    const { broker, clock } = makeBroker();
    const errors = collect(broker, 'error');
    const c = connected(broker, 'k', { keepaliveSeconds: 4 });
    // 1.5 x 4 s = 6 s: open through 6 s of silence, closed within one sweep after.
    for (let elapsed = 0; elapsed < 6000; elapsed += 250) {
      clock.advance(250);
      expect(c.closed, `closed after ${elapsed + 250} ms`).toBe(false);
    }
    clock.advance(1000);
    expect(c.closed).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['CORE_KEEPALIVE_TIMEOUT']);
  });

  it('[MQTT-3.1.2-24] any control packet resets the keep-alive timer', () => {
    const { broker, clock } = makeBroker();
    const c = connected(broker, 'k', { keepaliveSeconds: 2 });
    for (let i = 0; i < 10; i++) {
      clock.advance(2500);
      c.subscribe(`t/${i}`, 0, i + 1);
    }
    expect(c.closed).toBe(false);
    clock.advance(4000);
    expect(c.closed).toBe(true);
  });

  it('[MQTT-3.1.2-23] a keep-alive of 0 turns the mechanism off', () => {
    const { broker, clock } = makeBroker();
    const c = connected(broker, 'k', { keepaliveSeconds: 0 });
    clock.advance(24 * 3600 * 1000);
    expect(c.closed).toBe(false);
  });

  it('[MQTT-3.12.4-1] PINGREQ is answered with PINGRESP and resets the timer', () => {
    const { broker, clock } = makeBroker();
    const c = connected(broker, 'k', { keepaliveSeconds: 10 });
    for (let i = 0; i < 5; i++) {
      clock.advance(14_000);
      c.send({ type: 'pingreq' });
      expect(c.take()).toEqual([{ type: 'pingresp' }]);
    }
    expect(c.closed).toBe(false);
    clock.advance(15_000);
    expect(c.closed).toBe(false);
    clock.advance(1000);
    expect(c.closed).toBe(true);
  });

  it('receiving messages from the broker does not count as the client sending (keep-alive still fires)', () => {
    const { broker, clock } = makeBroker();
    const c = connected(broker, 'k', { keepaliveSeconds: 2 });
    c.subscribe('t');
    c.take();
    const pub = connected(broker, 'pub');
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      pub.publish('t', `m${i}`);
    }
    expect(c.closed).toBe(true);
  });

  it('each client has its own keep-alive', () => {
    const { broker, clock } = makeBroker();
    const short = connected(broker, 'short', { keepaliveSeconds: 2 });
    const long = connected(broker, 'long', { keepaliveSeconds: 60 });
    clock.advance(5000);
    expect(short.closed).toBe(true);
    expect(long.closed).toBe(false);
    clock.advance(86_000);
    expect(long.closed).toBe(true);
  });
});

describe('limits.idleTimeoutSeconds (DefaultIdleTimeout)', () => {
  it('closes a client that sent and received nothing for the idle timeout (CORE_IDLE_TIMEOUT), not before', () => {
    const { broker, clock } = makeBroker({ limits: { idleTimeoutSeconds: 30 } });
    const errors = collect(broker, 'error');
    const c = connected(broker, 'idle');
    clock.advance(30_000);
    expect(c.closed).toBe(false);
    clock.advance(1000);
    expect(c.closed).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['CORE_IDLE_TIMEOUT']);
  });

  it('traffic from the client keeps it open', () => {
    const { broker, clock } = makeBroker({ limits: { idleTimeoutSeconds: 30 } });
    const c = connected(broker, 'busy');
    for (let i = 0; i < 10; i++) {
      clock.advance(20_000);
      c.send({ type: 'pingreq' });
    }
    expect(c.closed).toBe(false);
  });

  it('traffic to the client keeps it open (the idle timeout counts sent and received data)', () => {
    const { broker, clock } = makeBroker({ limits: { idleTimeoutSeconds: 30 } });
    const sub = connected(broker, 'listener');
    sub.subscribe('news');
    const pub = connected(broker, 'pub', { keepaliveSeconds: 0 });
    for (let i = 0; i < 10; i++) {
      clock.advance(20_000);
      pub.publish('news', `item ${i}`);
    }
    expect(sub.closed).toBe(false);
    expect(sub.takePublishes()).toHaveLength(10);
  });

  it('0 turns the idle timeout off', () => {
    const { broker, clock } = makeBroker({ limits: { idleTimeoutSeconds: 0 } });
    const c = connected(broker, 'idle');
    clock.advance(7 * 24 * 3600 * 1000);
    expect(c.closed).toBe(false);
  });
});
