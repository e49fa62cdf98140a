import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import mqtt from 'mqtt';
import type { RunningServer } from '../../src/server.js';

/** Rejects with a message naming `what` unless `promise` settles within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` every 20 ms until it returns true; rejects after `ms`. */
export async function waitUntil(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface ReceivedMessage {
  topic: string;
  payload: Buffer;
  packet: mqtt.IPublishPacket;
}

/**
 * MQTT.js clients a test opened; `closeAll()` in afterEach forces every one closed. No
 * reconnecting: a test that wants a reconnect opens a new client.
 */
export class ClientPool {
  private readonly clients: mqtt.MqttClient[] = [];
  private readonly connacks = new WeakMap<mqtt.MqttClient, mqtt.IConnackPacket>();
  private readonly inboxes = new WeakMap<mqtt.MqttClient, Inbox>();

  /**
   * Connects and waits for CONNACK. `setup` runs before the connection opens (attach an Inbox there
   * to catch messages sent right after CONNACK); an Inbox it returns is kept for `inboxOf`.
   */
  async connect(
    url: string,
    options: mqtt.IClientOptions = {},
    setup?: (client: mqtt.MqttClient) => Inbox | undefined,
  ): Promise<mqtt.MqttClient> {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    this.clients.push(client);
    const inbox = setup?.(client);
    if (inbox !== undefined) this.inboxes.set(client, inbox);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        client.once('connect', (connack) => {
          this.connacks.set(client, connack);
          resolve();
        });
        client.once('error', reject);
        client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
      }),
      8000,
      `CONNACK from ${url}`,
    );
    // Later errors (e.g. after a takeover) must not become unhandled 'error' events.
    client.on('error', () => undefined);
    return client;
  }

  /** The CONNACK a client of this pool received. */
  connackOf(client: mqtt.MqttClient): mqtt.IConnackPacket | undefined {
    return this.connacks.get(client);
  }

  /** The Inbox `setup` attached to a client. */
  inboxOf(client: mqtt.MqttClient): Inbox | undefined {
    return this.inboxes.get(client);
  }

  /** Opens a client without waiting; the caller handles its events. */
  open(url: string, options: mqtt.IClientOptions = {}): mqtt.MqttClient {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    this.clients.push(client);
    return client;
  }

  async closeAll(): Promise<void> {
    const clients = this.clients.splice(0);
    await Promise.all(
      clients.map((c) => withTimeout(c.endAsync(true), 3000, 'client end').catch(() => c.stream?.destroy())),
    );
  }
}

/** Collects every message a client receives, with bounded waits for what a test expects. */
export class Inbox {
  readonly messages: ReceivedMessage[] = [];
  constructor(client: mqtt.MqttClient) {
    client.on('message', (topic, payload, packet) => this.messages.push({ topic, payload, packet }));
  }

  /** Waits until `count` messages (matching `filter`) have arrived and returns them. */
  async take(
    count: number,
    ms = 5000,
    filter: (m: ReceivedMessage) => boolean = () => true,
  ): Promise<ReceivedMessage[]> {
    await waitUntil(() => this.messages.filter(filter).length >= count, ms, `${count} message(s)`);
    return this.messages.filter(filter).slice(0, count);
  }

  async first(topic: string, ms = 5000): Promise<ReceivedMessage> {
    const [m] = await this.take(1, ms, (x) => x.topic === topic);
    return m!;
  }
}

/** Resolves with the first event `name` of an emitter-like object, or rejects after `ms`. */
export function nextEvent<T = unknown>(
  emitter: { once(name: string, listener: (...args: never[]) => void): unknown },
  name: string,
  ms = 5000,
): Promise<T> {
  return withTimeout(
    new Promise<T>((resolve) => {
      emitter.once(name, ((value: T) => resolve(value)) as (...args: never[]) => void);
    }),
    ms,
    `event '${name}'`,
  );
}

/** The bound port of a server's first listener of `protocol`. */
export function portOf(server: RunningServer, protocol: 'tcp' | 'tls' | 'ws' | 'wss'): number {
  const listener = server.broker.listeners.find((l) => l.protocol === protocol);
  if (listener === undefined || !listener.isListening) throw new Error(`no ${protocol} listener is running`);
  return listener.port;
}

/** A port that was free a moment ago (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A raw TCP socket to 127.0.0.1:port, connected. */
export function rawSocket(port: number): Promise<Socket> {
  return withTimeout(
    new Promise<Socket>((resolve, reject) => {
      const socket = tcpConnect({ host: '127.0.0.1', port }, () => resolve(socket));
      socket.once('error', reject);
    }),
    5000,
    `TCP connect to ${port}`,
  );
}

/** Whether an executable exists at `path`. */
export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a test needing `binary` should be skipped: only when it is missing outside CI. In CI a
 * missing binary is a failure (the test runs and fails loudly).
 */
export function skipWithout(binary: string): boolean {
  if (isExecutable(binary)) return false;
  if (process.env['CI']) return false;
  console.warn(`skipping: ${binary} is not installed (run scripts/system-deps.sh)`);
  return true;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A child process the test started, with its output so far and a bounded wait for its exit. */
export class Child {
  stdout = '';
  stderr = '';
  readonly exited: Promise<ProcessResult>;
  constructor(readonly process: ChildProcess) {
    process.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
    });
    process.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => {
      process.once('close', (code, signal) =>
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }),
      );
      process.once('error', (error) =>
        resolve({ code: null, signal: null, stdout: this.stdout, stderr: `${this.stderr}${String(error)}` }),
      );
    });
  }

  get isRunning(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Waits for the exit; rejects (with the output so far) after `ms`. */
  wait(ms: number): Promise<ProcessResult> {
    return withTimeout(
      this.exited,
      ms,
      `exit of ${this.process.spawnfile}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
    });
  }

  /** Waits until stdout (or stderr) contains text matching `pattern`. */
  async waitForOutput(pattern: RegExp, ms: number): Promise<void> {
    try {
      await waitUntil(
        () => pattern.test(this.stdout) || pattern.test(this.stderr) || !this.isRunning,
        ms,
        `output ${pattern}`,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
    }
    if (!pattern.test(this.stdout) && !pattern.test(this.stderr)) {
      await this.exited;
      throw new Error(
        `${this.process.spawnfile} exited (${this.process.exitCode ?? this.process.signalCode}) before printing ${pattern}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
      );
    }
  }

  /** SIGKILLs the process by its pid if it still runs, and waits for it. */
  async kill(): Promise<void> {
    if (this.isRunning) this.process.kill('SIGKILL');
    await withTimeout(this.exited, 5000, 'killed child').catch(() => undefined);
  }
}

/** Child processes a test file started; `killAll()` in afterEach/afterAll. */
export class ChildPool {
  private readonly children: Child[] = [];

  spawn(command: string, args: string[], options: SpawnOptions = {}): Child {
    const child = new Child(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options }));
    this.children.push(child);
    return child;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.children.splice(0).map((c) => c.kill()));
  }
}
