import { once } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TcpListener } from '../src/tcp.js';
import { WsListener } from '../src/ws.js';
import { closedOf, portOf, Recorder } from './helpers/util.js';

/** Socket and timer handles alive now; timers of the test runner and servers still closing from earlier tests come and go, so those may only fall. */
function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {
    TCPSocketWrap: 0,
    TCPServerWrap: 0,
    TLSWrap: 0,
    Timeout: 0,
    Immediate: 0,
  };
  for (const name of process.getActiveResourcesInfo())
    if (name in counts) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

function atBaseline(baseline: Record<string, number>): boolean {
  const now = resourceCounts();
  return Object.entries(now).every(([name, count]) =>
    name === 'Timeout' || name === 'Immediate' || name === 'TCPServerWrap'
      ? count <= (baseline[name] ?? 0)
      : count === baseline[name],
  );
}

async function settle(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !predicate(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('many connections', () => {
  it('opens and closes 1000 TCP connections, 50 at a time, without leaking', async () => {
    const listener = new TcpListener({ host: '127.0.0.1', port: 0, connectTimeoutMs: 5000 });
    const recorders: Recorder[] = [];
    listener.onConnection = (connection) => {
      recorders.push(new Recorder(connection, true));
    };
    await listener.start();
    const server = listener.netServer!;
    const serverListeners = server.eventNames().map((name) => [name, server.listenerCount(name)]);
    const baseline = resourceCounts();
    const port = portOf(listener);
    for (let batch = 0; batch < 20; batch++) {
      const sockets = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const socket = net.connect({ port, host: '127.0.0.1' });
          await once(socket, 'connect');
          socket.write(Buffer.from([batch, i]));
          await once(socket, 'data');
          return socket;
        }),
      );
      expect(listener.connections.size).toBe(50);
      // Half close politely, half reset.
      for (const [i, socket] of sockets.entries()) {
        if (i % 2 === 0) socket.end();
        else socket.resetAndDestroy();
      }
      await Promise.all(sockets.map(closedOf));
      await settle(() => listener.connections.size === 0);
      expect(listener.connections.size).toBe(0);
    }
    expect(recorders.length).toBe(1000);
    await settle(() => recorders.every((r) => r.closeCount === 1));
    expect(recorders.every((r) => r.closeCount === 1)).toBe(true);
    expect(server.eventNames().map((name) => [name, server.listenerCount(name)])).toEqual(serverListeners);
    await settle(() => atBaseline(baseline));
    expect(atBaseline(baseline), JSON.stringify({ now: resourceCounts(), baseline })).toBe(true);
    await listener.stop();
  });

  it('opens and closes 300 WebSocket connections, 50 at a time, without leaking', async () => {
    const listener = new WsListener({ host: '127.0.0.1', port: 0 });
    let closed = 0;
    listener.onConnection = (connection) => {
      const recorder = new Recorder(connection, true);
      recorder.closed.then(() => {
        closed += 1;
      });
    };
    await listener.start();
    const baseline = resourceCounts();
    const url = `ws://127.0.0.1:${portOf(listener)}/mqtt`;
    for (let batch = 0; batch < 6; batch++) {
      const clients = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const ws = new WebSocket(url, 'mqtt');
          await once(ws, 'open');
          ws.send(Buffer.from([1, 2, 3]));
          await once(ws, 'message');
          return ws;
        }),
      );
      expect(listener.connections.size).toBe(50);
      for (const [i, ws] of clients.entries()) {
        if (i % 2 === 0) ws.close(1000);
        else ws.terminate();
      }
      await Promise.all(
        clients.map((ws) => (ws.readyState === WebSocket.CLOSED ? undefined : once(ws, 'close'))),
      );
      await settle(() => listener.connections.size === 0);
      expect(listener.connections.size).toBe(0);
    }
    await settle(() => closed === 300);
    expect(closed).toBe(300);
    await settle(() => atBaseline(baseline));
    expect(atBaseline(baseline), JSON.stringify({ now: resourceCounts(), baseline })).toBe(true);
    await listener.stop();
  });
});
