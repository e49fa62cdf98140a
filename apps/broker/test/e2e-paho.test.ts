/**
 * End to end: Eclipse Paho's Python client (Debian's python3-paho-mqtt 1.6, an independent MQTT
 * implementation) against the real server over TCP, with MQTT.js on the other side. The scripts in
 * fixtures/paho/ print JSON lines that the test parses.
 *
 * Always /usr/bin/python3: the python3 first on PATH may be another one without paho. Skipped only
 * when paho is missing outside CI; in CI a missing paho fails loudly.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/server.js';
import { type Child, ChildPool, ClientPool, Inbox, withTimeout } from './helpers/clients.js';
import { startTestServer } from './helpers/server.js';

const PYTHON = '/usr/bin/python3';
const FIXTURES = fileURLToPath(new URL('./fixtures/paho/', import.meta.url));
const TIMEOUT_S = 8;

function pahoVersion(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', 'import paho.mqtt; print(paho.mqtt.__version__)'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return probe.status === 0 ? probe.stdout.trim() : undefined;
}
const version = pahoVersion();
const missing = version === undefined && !process.env['CI'];
if (missing) console.warn(`skipping: ${PYTHON} has no paho-mqtt (apt-get install python3-paho-mqtt)`);

let server: RunningServer & { tcpPort: number; url: string };
const pool = new ClientPool();
const children = new ChildPool();
let seq = 0;

beforeAll(async () => {
  server = await startTestServer({ listeners: [{ protocol: 'tcp', host: '127.0.0.1', port: 0 }] });
});
afterEach(async () => {
  await children.killAll();
  await pool.closeAll();
});
afterAll(async () => {
  await children.killAll();
  await server?.stop();
});

type PahoEvent = { event: string } & Record<string, unknown>;

/** Starts a fixture script with host and port; the rest of the arguments follow. */
function paho(script: string, ...args: Array<string | number>): Child {
  return children.spawn(
    PYTHON,
    [`${FIXTURES}${script}`, '127.0.0.1', String(server.tcpPort), ...args.map(String)],
    {
      cwd: FIXTURES,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1' },
    },
  );
}

/** The JSON lines a script printed so far. */
function events(child: Child): PahoEvent[] {
  return child.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as PahoEvent;
      } catch {
        throw new Error(`not a JSON line from paho: ${line}\nstderr: ${child.stderr}`);
      }
    });
}

/** Waits for the script's exit (bounded) and expects success; returns its events. */
async function finished(child: Child): Promise<PahoEvent[]> {
  const result = await child.wait((TIMEOUT_S + 4) * 1000);
  expect(result.code, `paho script failed\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
  return events(child);
}

const id = (what: string) => `paho-${what}-${process.pid}-${++seq}`;

describe.skipIf(missing)(`paho-mqtt ${version ?? '(missing)'} (Python)`, () => {
  it('is installed for /usr/bin/python3', () => {
    // In CI this is where a missing paho shows: the suite is not skipped there.
    expect(version, `${PYTHON} cannot import paho.mqtt`).toMatch(/^1\./);
  });

  it('connects, subscribes with QoS 1 and receives a message published by MQTT.js', async () => {
    const topic = `paho/in/${seq}`;
    const sub = paho('sub.py', id('sub'), topic, 1, 1, TIMEOUT_S);
    await sub.waitForOutput(/"event": "suback"/, TIMEOUT_S * 1000);
    expect(events(sub).find((e) => e.event === 'suback')).toMatchObject({ granted: [1] });
    expect(events(sub)[0]).toMatchObject({ event: 'connack', rc: 0, sessionPresent: false });

    const publisher = await pool.connect(server.url, { clientId: id('mqttjs-pub'), protocolVersion: 4 });
    await publisher.publishAsync(topic, 'from node', { qos: 1 });

    const out = await finished(sub);
    expect(out.filter((e) => e.event === 'message')).toEqual([
      { event: 'message', topic, payload: 'from node', qos: 1, retain: false, dup: false },
    ]);
  });

  it('publishes with QoS 1 and MQTT.js receives it', async () => {
    const topic = `paho/out/${seq}`;
    let inbox: Inbox | undefined;
    const subscriber = await pool.connect(
      server.url,
      { clientId: id('mqttjs-sub'), protocolVersion: 4 },
      (c) => {
        inbox = new Inbox(c);
        return inbox;
      },
    );
    await subscriber.subscribeAsync(topic, { qos: 1 });

    const out = await finished(paho('pub.py', id('pub'), topic, 'from python', 1, TIMEOUT_S));
    expect(out.find((e) => e.event === 'published')).toMatchObject({ qos: 1 });

    const message = await inbox!.first(topic);
    expect(message.payload.toString()).toBe('from python');
    expect(message.packet.qos).toBe(1);
  });

  it('has its will published when it closes abruptly (no DISCONNECT)', async () => {
    const willTopic = `paho/will/${seq}`;
    let inbox: Inbox | undefined;
    const watcher = await pool.connect(server.url, { clientId: id('watcher'), protocolVersion: 4 }, (c) => {
      inbox = new Inbox(c);
      return inbox;
    });
    await watcher.subscribeAsync(willTopic, { qos: 1 });

    const out = await finished(paho('will.py', id('will'), willTopic, 'python died', 1, TIMEOUT_S));
    expect(out.map((e) => e.event)).toEqual(['connack', 'abrupt-close']);

    const will = await inbox!.first(willTopic, 5000);
    expect(will.payload.toString()).toBe('python died');
    expect(will.packet.qos).toBe(1);
    expect(will.packet.retain).toBe(false);
  });

  it('does a QoS 2 round trip: MQTT.js → paho and paho → MQTT.js, exactly once each', async () => {
    const toPaho = `paho/q2/in/${seq}`;
    const fromPaho = `paho/q2/out/${seq}`;

    // MQTT.js publishes QoS 2 to a paho subscriber (PUBLISH, PUBREC, PUBREL, PUBCOMP on both legs).
    const sub = paho('sub.py', id('q2sub'), toPaho, 2, 1, TIMEOUT_S);
    await sub.waitForOutput(/"event": "suback"/, TIMEOUT_S * 1000);
    expect(events(sub).find((e) => e.event === 'suback')).toMatchObject({ granted: [2] });
    const node = await pool.connect(
      server.url,
      { clientId: id('q2node'), protocolVersion: 4 },
      (c) => new Inbox(c),
    );
    await withTimeout(node.publishAsync(toPaho, 'q2 to python', { qos: 2 }), 5000, 'PUBCOMP for MQTT.js');
    const received = (await finished(sub)).filter((e) => e.event === 'message');
    expect(received).toEqual([
      { event: 'message', topic: toPaho, payload: 'q2 to python', qos: 2, retain: false, dup: false },
    ]);

    // paho publishes QoS 2 (on_publish fires on PUBCOMP) to the MQTT.js subscriber.
    await node.subscribeAsync(fromPaho, { qos: 2 });
    const out = await finished(paho('pub.py', id('q2pub'), fromPaho, 'q2 from python', 2, TIMEOUT_S));
    expect(out.find((e) => e.event === 'published')).toMatchObject({ qos: 2 });
    const inbox = pool.inboxOf(node as mqtt.MqttClient)!;
    const message = await inbox.first(fromPaho);
    expect(message.payload.toString()).toBe('q2 from python');
    expect(message.packet.qos).toBe(2);
    // Exactly once: nothing more arrives.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(inbox.messages.filter((m) => m.topic === fromPaho)).toHaveLength(1);
  });
});
