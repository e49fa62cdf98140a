/**
 * Users and ACLs end to end: a MqttBroker on a real TCP socket with installAuth, and MQTT.js
 * clients.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AuthOptions, installAuth } from '../src/auth.js';
import { MqttBroker } from '../src/mqtt-broker.js';
import { hashPassword } from '../src/passwd.js';

const USERS_FIXTURE = new URL('./fixtures/auth-users.txt', import.meta.url).pathname; // alice, bob
const ACL = `# anonymous
topic read public/#

user alice
topic readwrite sensors/#
topic read commands/#
topic read $SYS/#

user bob
topic read sensors/#
topic write commands/#
topic write public/#

pattern readwrite %u/#
`;

let dir: string;
let broker: MqttBroker | undefined;
const clients: mqtt.MqttClient[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'auth-e2e-'));
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await broker?.shutdown();
  broker = undefined;
  rmSync(dir, { recursive: true, force: true });
});

interface Logged {
  info: string[];
  warn: string[];
}

/** Starts a broker with installAuth; the ACL text (if any) is written to the temp dir. */
async function start(options: { acl?: string; users?: string; allowAnonymous?: boolean } = {}) {
  const aclFile = join(dir, 'acl');
  if (options.acl !== undefined) writeFileSync(aclFile, options.acl);
  const authOptions: AuthOptions = {
    allowAnonymous: options.allowAnonymous ?? false,
    ...(options.users === undefined ? {} : { passwordFile: options.users }),
    ...(options.acl === undefined ? {} : { aclFile }),
  };
  const logged: Logged = { info: [], warn: [] };
  broker = new MqttBroker();
  const auth = installAuth(broker, authOptions, {
    info: (m) => logged.info.push(m),
    warn: (m) => logged.warn.push(m),
  });
  broker.addListener({ protocol: 'tcp', host: '127.0.0.1', port: 0 });
  await broker.startListening();
  const url = `mqtt://127.0.0.1:${broker.listeners[0]!.port}`;
  return { auth, url, logged };
}

async function connect(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(client);
  client.on('error', () => undefined);
  return client;
}

/** The CONNACK return code of a refused connection (MQTT.js rejects with it as `code`). */
async function refusal(url: string, options: mqtt.IClientOptions): Promise<unknown> {
  try {
    const client = await connect(url, options);
    return `accepted (${client.options.clientId})`;
  } catch (error) {
    return (error as { code?: unknown }).code;
  }
}

/**
 * The SUBACK return codes for `subscriptions`, in order. MQTT.js 5.16 rejects subscribeAsync when
 * any code is a failure (0x80), with the SUBACK packet on the error; earlier 5.x resolved.
 */
async function subscribe(client: mqtt.MqttClient, subscriptions: mqtt.ISubscriptionMap): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(subscriptions, (error, _granted, packet) => {
      const suback = (error as { packet?: { granted?: unknown } } | null | undefined)?.packet ?? packet;
      const granted = (suback as { granted?: number[] } | undefined)?.granted;
      if (granted === undefined) reject(error ?? new Error('no SUBACK'));
      else resolve(granted);
    });
  });
}

/** Collects messages; `until(topic)` resolves with everything received up to that topic's first message. */
function inbox(client: mqtt.MqttClient) {
  const received: Array<{ topic: string; payload: string }> = [];
  let waiter: { topic: string; resolve: () => void } | undefined;
  client.on('message', (topic, payload) => {
    received.push({ topic, payload: payload.toString() });
    if (waiter?.topic === topic) waiter.resolve();
  });
  return {
    received,
    until(topic: string): Promise<Array<{ topic: string; payload: string }>> {
      if (received.some((m) => m.topic === topic)) return Promise.resolve(received);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no message on ${topic}`)), 5000);
        waiter = {
          topic,
          resolve: () => {
            clearTimeout(timer);
            resolve(received);
          },
        };
      });
    },
  };
}

describe('authentication (CONNECT)', () => {
  it('accepts a user with the right password', async () => {
    const { url } = await start({ users: USERS_FIXTURE });
    const client = await connect(url, { username: 'alice', password: 'alice-secret' });
    expect(client.connected).toBe(true);
    expect([...broker!.connections.values()].map((c) => c.userName)).toEqual(['alice']);
  });

  it('refuses a wrong password, an unknown user and a missing password with CONNACK 4 (table 3.1)', async () => {
    // 3.1.3.4, 3.1.3.5: the user name and password are for the server to authenticate;
    // return code 4 is "bad user name or password"; a refusal closes the connection [MQTT-3.2.2-5].
    const { url } = await start({ users: USERS_FIXTURE });
    expect(await refusal(url, { username: 'alice', password: 'bob-secret' })).toBe(4);
    expect(await refusal(url, { username: 'mallory', password: 'alice-secret' })).toBe(4);
    expect(await refusal(url, { username: 'alice' })).toBe(4);
    expect(broker!.connections.size).toBe(0);
  });

  it('refuses clients without a username with CONNACK 5 unless anonymous clients are allowed', async () => {
    const { url } = await start({ users: USERS_FIXTURE, allowAnonymous: false });
    expect(await refusal(url, {})).toBe(5);
    await broker!.shutdown();

    const allowed = await start({ users: USERS_FIXTURE, allowAnonymous: true });
    const client = await connect(allowed.url, {});
    expect(client.connected).toBe(true);
    // Anonymous allowed does not make a wrong password acceptable.
    expect(await refusal(allowed.url, { username: 'alice', password: 'wrong' })).toBe(4);
  });

  it('without a password file and without anonymous clients, nobody can connect (and it is logged)', async () => {
    const { url, logged } = await start({ allowAnonymous: false });
    expect(await refusal(url, { username: 'alice', password: 'alice-secret' })).toBe(5);
    expect(await refusal(url, {})).toBe(5);
    expect(logged.warn.join('\n')).toMatch(/every client will be refused/);
  });

  it('reload() picks up a changed password file; a broken file keeps the previous users', async () => {
    const users = join(dir, 'users.txt');
    copyFileSync(USERS_FIXTURE, users);
    const { url, auth, logged } = await start({ users });
    writeFileSync(users, `alice:${await hashPassword('new-password')}\n`);
    expect(await refusal(url, { username: 'alice', password: 'new-password' })).toBe(4); // not reloaded yet
    expect(auth.reload()).toBe(true);
    expect(await refusal(url, { username: 'alice', password: 'alice-secret' })).toBe(4);
    expect(await refusal(url, { username: 'bob', password: 'bob-secret' })).toBe(4);
    await connect(url, { username: 'alice', password: 'new-password' });

    writeFileSync(users, 'alice:plaintext\n');
    expect(auth.reload()).toBe(false);
    expect(logged.warn.at(-1)).toMatch(/not reloaded.*users\.txt:1/);
    await connect(url, { username: 'alice', password: 'new-password' });
  });

  it('installAuth throws for a broken file, so the server does not start with it', () => {
    const users = join(dir, 'users.txt');
    writeFileSync(users, '# ok\nalice\n');
    expect(() => installAuth(new MqttBroker(), { passwordFile: users, allowAnonymous: false })).toThrow(
      expect.objectContaining({
        code: 'APP_INVALID_PASSWORD_FILE',
        message: expect.stringContaining(`${users}:2:`),
      }),
    );
    writeFileSync(join(dir, 'acl'), 'topic raed a\n');
    expect(() => installAuth(new MqttBroker(), { aclFile: join(dir, 'acl'), allowAnonymous: true })).toThrow(
      expect.objectContaining({ code: 'APP_INVALID_ACL_FILE' }),
    );
  });

  it("accepts a pino logger (the server's) for its messages", async () => {
    const logger = pino({ level: 'silent' });
    broker = new MqttBroker();
    expect(() =>
      installAuth(
        broker!,
        { passwordFile: USERS_FIXTURE, aclFile: undefined, allowAnonymous: false },
        logger,
      ),
    ).not.toThrow();
  });
});

describe('ACL (SUBSCRIBE and PUBLISH)', () => {
  it('refuses a subscription outside the grant with SUBACK 0x80; a granted one keeps the requested QoS', async () => {
    const { url } = await start({ users: USERS_FIXTURE, acl: ACL });
    const bob = await connect(url, { username: 'bob', password: 'bob-secret' });
    const granted = await subscribe(bob, {
      'sensors/+/temp': { qos: 2 },
      'commands/#': { qos: 1 },
      '#': { qos: 0 },
    });
    // [MQTT-3.9.3-1] one return code per filter, in order; 0x80 is Failure (3.9.3).
    // commands/#: bob may only write there; #: not covered by any grant.
    expect(granted).toEqual([2, 128, 128]);
  });

  it('drops a publish the client may not write: a subscriber allowed to read it does not get it', async () => {
    const { url } = await start({ users: USERS_FIXTURE, acl: ACL });
    const alice = await connect(url, { username: 'alice', password: 'alice-secret' });
    const aliceInbox = inbox(alice);
    expect(await subscribe(alice, { 'sensors/#': { qos: 1 }, 'commands/#': { qos: 1 } })).toEqual([1, 1]);
    const bob = await connect(url, { username: 'bob', password: 'bob-secret' });
    // Acknowledged although dropped (as Mosquitto does), so QoS 1 does not retry it.
    await bob.publishAsync('sensors/t1', 'forged', { qos: 1 });
    await bob.publishAsync('sensors/t1', 'forged', { qos: 2 });
    await bob.publishAsync('commands/lamp', 'on', { qos: 1 });
    // The refused publishes were acknowledged before the marker was sent: had they been routed,
    // they would have reached alice before it.
    expect(await aliceInbox.until('commands/lamp')).toEqual([{ topic: 'commands/lamp', payload: 'on' }]);
  });

  it('a pattern %u/# grant lets alice use alice/x but not bob/x', async () => {
    const { url } = await start({ users: USERS_FIXTURE, acl: ACL });
    const alice = await connect(url, { username: 'alice', password: 'alice-secret' });
    const aliceInbox = inbox(alice);
    expect(await subscribe(alice, { 'alice/#': { qos: 1 }, 'bob/x': { qos: 1 } })).toEqual([1, 128]);

    const bob = await connect(url, { username: 'bob', password: 'bob-secret' });
    const bobInbox = inbox(bob);
    expect(await subscribe(bob, { 'bob/#': { qos: 1 } })).toEqual([1]);
    await alice.publishAsync('bob/x', 'from alice', { qos: 1 }); // dropped
    await alice.publishAsync('alice/x', 'mine', { qos: 1 });
    await alice.publishAsync('bob/y', 'from alice', { qos: 1 }); // dropped
    await bob.publishAsync('bob/done', 'marker', { qos: 1 });
    expect(await aliceInbox.until('alice/x')).toEqual([{ topic: 'alice/x', payload: 'mine' }]);
    expect(await bobInbox.until('bob/done')).toEqual([{ topic: 'bob/done', payload: 'marker' }]);
  });

  it('anonymous clients get the rules before the first user line', async () => {
    const { url } = await start({ users: USERS_FIXTURE, acl: ACL, allowAnonymous: true });
    const anonymous = await connect(url, {});
    const anonymousInbox = inbox(anonymous);
    expect(await subscribe(anonymous, { 'public/#': { qos: 0 }, 'sensors/#': { qos: 0 } })).toEqual([0, 128]);
    await anonymous.publishAsync('public/news', 'anonymous write', { qos: 1 }); // read only: dropped
    const bob = await connect(url, { username: 'bob', password: 'bob-secret' });
    await bob.publishAsync('public/news', 'from bob', { qos: 1 });
    expect(await anonymousInbox.until('public/news')).toEqual([
      { topic: 'public/news', payload: 'from bob' },
    ]);
  });
});

describe('$SYS', () => {
  it('a client publish to $SYS/... is dropped, without an ACL and even with an ACL granting it', async () => {
    for (const acl of [undefined, 'topic readwrite $SYS/#\ntopic readwrite marker\n']) {
      const { url } = await start({ allowAnonymous: true, ...(acl === undefined ? {} : { acl }) });
      const subscriber = await connect(url, {});
      const subscriberInbox = inbox(subscriber);
      expect(await subscribe(subscriber, { '$SYS/#': { qos: 1 }, marker: { qos: 1 } })).toEqual([1, 1]);
      const publisher = await connect(url, {});
      await publisher.publishAsync('$SYS/broker/uptime', '0', { qos: 1, retain: true });
      await publisher.publishAsync('marker', 'done', { qos: 1 });
      expect(await subscriberInbox.until('marker')).toEqual([{ topic: 'marker', payload: 'done' }]);
      expect(broker!.messages.get('$SYS/broker/uptime')).toBeUndefined();
      await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
      await broker!.shutdown();
    }
  });

  it("the broker's own $SYS messages still reach subscribers", async () => {
    const { url } = await start({ users: USERS_FIXTURE, acl: ACL });
    const alice = await connect(url, { username: 'alice', password: 'alice-secret' });
    const aliceInbox = inbox(alice);
    expect(await subscribe(alice, { '$SYS/#': { qos: 0 } })).toEqual([0]);
    broker!.publish('$SYS/broker/uptime', '42 seconds');
    expect(await aliceInbox.until('$SYS/broker/uptime')).toEqual([
      { topic: '$SYS/broker/uptime', payload: '42 seconds' },
    ]);
  });
});
