#!/usr/bin/env node
// Soak test: the built broker (apps/broker/dist/cli.js, memory store, TCP on 127.0.0.1 only) under
// many idle connections that keep themselves alive with PINGREQ, plus a steady QoS 1 publish load.
// Samples the broker's RSS (/proc/<pid>/status VmRSS) every 10 s, prints the series and the growth
// after the warm-up. Everything goes to 127.0.0.0/8; bounded in connections and time; exits by itself.
//
//   node scripts/soak.mjs [--connections 10000] [--minutes 5] [--rate 1000] [--subscribers 4]
//                         [--warmup-seconds 60] [--sample-seconds 10] [--no-build]
//
// Exit status: 0 when the run completed (whatever the RSS did: read the numbers), 1 when the broker
// died, connections could not be opened, or more than 1% of connections or messages were lost.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, connect as tcpConnect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const selfPath = fileURLToPath(import.meta.url);

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '10000' },
    minutes: { type: 'string', default: '5' },
    rate: { type: 'string', default: '1000' },
    subscribers: { type: 'string', default: '4' },
    'warmup-seconds': { type: 'string', default: '60' },
    'sample-seconds': { type: 'string', default: '10' },
    'no-build': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: node scripts/soak.mjs [--connections N] [--minutes M] [--rate MSG_PER_S] [--subscribers S] [--warmup-seconds W] [--sample-seconds T] [--no-build]',
  );
  process.exit(0);
}
const CONNECTIONS = Math.min(Number(values.connections), 60_000);
const MINUTES = Math.min(Number(values.minutes), 120);
const RATE = Math.min(Number(values.rate), 20_000);
const SUBSCRIBERS = Math.max(1, Math.min(Number(values.subscribers), 64));
const WARMUP_MS = Number(values['warmup-seconds']) * 1000;
const SAMPLE_MS = Number(values['sample-seconds']) * 1000;
const KEEPALIVE_S = 30;
const PING_EVERY_S = 20; // well inside the 1.5 × keep-alive the broker allows
const OPEN_CONCURRENCY = 400;
const LOCAL_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`); // .2 – .9
if (![CONNECTIONS, MINUTES, RATE, WARMUP_MS, SAMPLE_MS].every((n) => Number.isFinite(n) && n >= 0)) {
  console.error('numeric options must be non-negative numbers');
  process.exit(2);
}

async function main() {
  const started = Date.now();
  const log = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}`);
  const fdLimit = spawnSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim();
  log(
    `soak: ${CONNECTIONS} idle connections, ${RATE} msg/s QoS 1 to ${SUBSCRIBERS} subscribers, ${MINUTES} min`,
  );
  log(`this process: fd limit ${fdLimit}; node ${process.version}`);

  // 2. Build the server (and what it depends on) unless told not to.
  if (!values['no-build']) {
    log('building @broker/app and its dependencies (turbo)');
    const build = spawnSync('pnpm', ['exec', 'turbo', 'run', 'build', '--filter=@broker/app...'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
    if (build.status !== 0) {
      console.error(build.stdout, build.stderr);
      throw new Error('build failed');
    }
  }
  const require = createRequire(join(root, 'apps', 'broker', 'package.json'));
  const mqtt = require('mqtt');

  // 3. The broker, through bash for its own descriptor limit (exec keeps the pid).
  const port = await freePort();
  const cli = join(root, 'apps', 'broker', 'dist', 'cli.js');
  const brokerCommand = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec '${process.execPath}' '${cli}' --memory --host 127.0.0.1 --port ${port} --ws-port -1 --log-level warn`;
  const broker = spawn('bash', ['-c', brokerCommand], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let brokerOutput = '';
  broker.stdout.setEncoding('utf8').on('data', (d) => {
    brokerOutput += d;
  });
  broker.stderr.setEncoding('utf8').on('data', (d) => {
    brokerOutput += d;
  });
  let brokerExited = false;
  broker.once('exit', (code, signal) => {
    brokerExited = true;
    if (!stopping) log(`BROKER EXITED (${code ?? signal}): ${brokerOutput.slice(-2000)}`);
  });
  let stopping = false;
  // A hard stop, whatever happens: the whole run plus generous slack for ramp-up and shutdown.
  const hardStop = setTimeout(
    () => {
      console.error('soak: hard time limit reached, killing the broker');
      broker.kill('SIGKILL');
      process.exit(1);
    },
    MINUTES * 60_000 + 10 * 60_000,
  );
  hardStop.unref();
  // Never leave the broker behind: on any error of this script, kill it first.
  process.once('uncaughtException', (error) => {
    broker.kill('SIGKILL');
    console.error(error);
    process.exit(1);
  });
  process.once('unhandledRejection', (error) => {
    broker.kill('SIGKILL');
    console.error(error);
    process.exit(1);
  });
  await waitForPort(port, 15_000);
  log(`broker pid ${broker.pid} on 127.0.0.1:${port}; RSS ${rssMiB(broker.pid)} MiB`);

  const series = [];
  const sample = (phase) => {
    const point = {
      t: Math.round((Date.now() - started) / 1000),
      phase,
      rssMiB: rssMiB(broker.pid),
      open: idle.open,
      pingsSent: idle.pings,
      pongs: idle.pongs,
      published: load.published,
      acked: load.acked,
      received: load.received,
      driverRssMiB: Math.round(process.memoryUsage.rss() / 1048576),
    };
    series.push(point);
    log(
      `RSS ${String(point.rssMiB).padStart(6)} MiB | open ${point.open} | pings ${point.pingsSent}/${point.pongs} pong | pub ${point.published} ack ${point.acked} rcv ${point.received} | ${phase} | driver ${point.driverRssMiB} MiB`,
    );
  };

  // 4. Idle connections: raw sockets, a hand-written CONNECT, PINGREQ every PING_EVERY_S seconds.
  const idle = { open: 0, failed: 0, dropped: 0, pings: 0, pongs: 0, sockets: [] };
  const load = { published: 0, acked: 0, received: 0, skipped: 0, inflight: 0 };
  const sampler = setInterval(() => sample(phaseNow()), SAMPLE_MS);
  let loadStartedAt = 0;
  const phaseNow = () =>
    loadStartedAt === 0 ? 'ramp-up' : Date.now() - loadStartedAt < WARMUP_MS ? 'warm-up' : 'steady';
  sample('start');

  let next = 0;
  const openOne = (index) =>
    new Promise((resolve) => {
      const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: LOCAL_ADDRESSES[index % 8] });
      let connected = false;
      let buffer = Buffer.alloc(0);
      const timer = setTimeout(() => socket.destroy(new Error('CONNACK timeout')), 20_000);
      socket.setNoDelay(true);
      socket.once('connect', () => socket.write(connectPacket(`soak-idle-${index}`, KEEPALIVE_S)));
      socket.on('data', (data) => {
        buffer = buffer.length === 0 ? data : Buffer.concat([buffer, data]);
        // Only CONNACK (20 02 ..) and PINGRESP (d0 00) come to an idle client.
        while (buffer.length >= 2) {
          const size = 2 + buffer[1];
          if (buffer.length < size) break;
          const type = buffer[0] >> 4;
          if (type === 2 && !connected) {
            clearTimeout(timer);
            if (buffer[3] !== 0) {
              socket.destroy(new Error(`CONNACK return code ${buffer[3]}`));
              return;
            }
            connected = true;
            idle.open++;
            idle.sockets[index] = socket;
            resolve(true);
          } else if (type === 13) {
            idle.pongs++;
          }
          buffer = buffer.subarray(size);
        }
      });
      socket.on('error', () => undefined);
      socket.once('close', () => {
        clearTimeout(timer);
        if (connected) {
          idle.open--;
          idle.sockets[index] = undefined;
          if (!stopping) idle.dropped++;
        } else {
          idle.failed++;
          resolve(false);
        }
      });
    });
  const opener = async () => {
    while (next < CONNECTIONS && !brokerExited) await openOne(next++);
  };
  log(`opening ${CONNECTIONS} connections from ${LOCAL_ADDRESSES[0]}–${LOCAL_ADDRESSES[7]}`);
  const rampStarted = Date.now();
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, opener));
  log(
    `${idle.open} connections open (${idle.failed} failed) in ${((Date.now() - rampStarted) / 1000).toFixed(1)} s`,
  );
  if (idle.failed > CONNECTIONS * 0.01 || brokerExited) {
    await shutdown();
    console.error('soak: could not open the connections');
    process.exit(1);
  }
  let tick = 0;
  const pinger = setInterval(() => {
    tick = (tick + 1) % PING_EVERY_S;
    for (let i = tick; i < idle.sockets.length; i += PING_EVERY_S) {
      const socket = idle.sockets[i];
      if (socket?.writable) {
        socket.write(PINGREQ);
        idle.pings++;
      }
    }
  }, 1000);

  // 5. The load: S subscribers on soak/load/<k> (QoS 1), two publishers round-robin over the topics.
  const clients = [];
  const url = `mqtt://127.0.0.1:${port}`;
  const open = (clientId) =>
    new Promise((resolve, reject) => {
      const client = mqtt.connect(url, {
        clientId,
        clean: true,
        reconnectPeriod: 0,
        protocolVersion: 4,
        keepalive: 30,
      });
      clients.push(client);
      client.once('connect', () => resolve(client));
      client.once('error', reject);
    });
  for (let k = 0; k < SUBSCRIBERS; k++) {
    const sub = await open(`soak-sub-${k}`);
    sub.on('message', () => {
      load.received++;
    });
    await sub.subscribeAsync(`soak/load/${k}`, { qos: 1 });
  }
  const publishers = [await open('soak-pub-0'), await open('soak-pub-1')];
  loadStartedAt = Date.now();
  log(`load started: ${RATE} msg/s`);
  const payload = Buffer.alloc(64, 0x61);
  const MAX_INFLIGHT = Math.max(1000, RATE * 2);
  let due = 0; // messages the rate asked for so far (sent or skipped)
  const publisher = setInterval(() => {
    const target = Math.floor(((Date.now() - loadStartedAt) / 1000) * RATE);
    const n = Math.min(target - due, RATE); // never a burst of more than a second's worth
    due = target;
    for (let i = 0; i < n; i++) {
      if (load.inflight >= MAX_INFLIGHT) {
        load.skipped++;
        continue;
      }
      const seq = load.published++;
      load.inflight++;
      publishers[seq % 2].publish(`soak/load/${seq % SUBSCRIBERS}`, payload, { qos: 1 }, (error) => {
        load.inflight--;
        if (error === undefined || error === null) load.acked++;
      });
    }
  }, 10);

  // 6. Run, then stop everything.
  await new Promise((resolve) => {
    const check = setInterval(() => {
      if (brokerExited || Date.now() - loadStartedAt >= MINUTES * 60_000) {
        clearInterval(check);
        resolve();
      }
    }, 250);
  });
  clearInterval(publisher);
  const loadStoppedAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 2000)); // the last acknowledgements
  sample('end');
  clearInterval(sampler);
  clearInterval(pinger);
  await shutdown();

  async function shutdown() {
    stopping = true;
    for (const client of clients) client.end(true);
    for (const socket of idle.sockets) socket?.destroy();
    if (!brokerExited) {
      const exited = new Promise((resolve) => broker.once('exit', resolve));
      broker.kill('SIGTERM');
      const timer = setTimeout(() => broker.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  }

  // 7. Report.
  const steady = series.filter((p) => p.phase === 'steady' || p.phase === 'end');
  console.log('\nRSS series (t = seconds since start):');
  console.log('    t  phase     RSS MiB  open  pings  pongs  published  acked  received');
  for (const p of series) {
    console.log(
      `${String(p.t).padStart(5)}  ${p.phase.padEnd(8)} ${String(p.rssMiB).padStart(8)} ${String(p.open).padStart(5)} ${String(p.pingsSent).padStart(6)} ${String(p.pongs).padStart(6)} ${String(p.published).padStart(10)} ${String(p.acked).padStart(6)} ${String(p.received).padStart(9)}`,
    );
  }
  let verdict = 'not enough samples after the warm-up to judge growth';
  if (steady.length >= 2) {
    const first = steady[0];
    const last = steady[steady.length - 1];
    const slope = regressionSlope(steady.map((p) => [p.t / 60, p.rssMiB])); // MiB per minute
    const min = Math.min(...steady.map((p) => p.rssMiB));
    const max = Math.max(...steady.map((p) => p.rssMiB));
    verdict = `after warm-up: ${first.rssMiB} → ${last.rssMiB} MiB (${signed((last.rssMiB - first.rssMiB).toFixed(1))} MiB over ${last.t - first.t} s), range ${min}–${max} MiB, trend ${signed(slope.toFixed(2))} MiB/min`;
  }
  const lastPoint = series[series.length - 1];
  const ackLoss = load.published - load.acked;
  const deliveryGap = load.acked - load.received;
  console.log(`\n${verdict}`);
  console.log(
    `connections: ${CONNECTIONS} asked, ${idle.failed} failed to open, ${idle.dropped} dropped by the broker; pings ${idle.pings}, pongs ${idle.pongs}`,
  );
  console.log(
    `messages: ${load.published} published, ${load.acked} acknowledged, ${load.received} received, ${load.skipped} skipped (in-flight cap ${MAX_INFLIGHT}); rate achieved ${Math.round(load.published / ((loadStoppedAt - loadStartedAt) / 1000))} msg/s`,
  );
  console.log(
    `broker: ${brokerExited && !stopping ? 'DIED' : 'alive until stopped'}; last RSS ${lastPoint?.rssMiB} MiB`,
  );
  const bad =
    (brokerExited && !stopping) ||
    idle.dropped > CONNECTIONS * 0.01 ||
    ackLoss > load.published * 0.01 + 100 ||
    deliveryGap > load.acked * 0.01 + 100;
  process.exit(bad ? 1 : 0);
}

// ------------------------------------------------------------------------------------------------

const PINGREQ = Buffer.from([0xc0, 0x00]);

/** A CONNECT (MQTT 3.1.1, clean session) for a short ASCII client id. */
function connectPacket(clientId, keepalive) {
  const id = Buffer.from(clientId, 'utf8');
  const variable = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepalive >> 8, keepalive & 0xff]);
  const length = variable.length + 2 + id.length;
  if (length > 127) throw new Error('client id too long for this CONNECT writer');
  return Buffer.concat([
    Buffer.from([0x10, length]),
    variable,
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ]);
}

function rssMiB(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1]);
    return Math.round((kb / 1024) * 10) / 10;
  } catch {
    return Number.NaN;
  }
}

function regressionSlope(points) {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function signed(value) {
  return Number(value) >= 0 ? `+${value}` : String(value);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const socket = tcpConnect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`broker did not listen on ${port} within ${ms} ms`);
}

// 1. This process holds one descriptor per connection: re-run through bash with a raised limit.
const env = process.env;
if (env['SOAK_ULIMIT_DONE'] === undefined) {
  const argv = process.argv.slice(2).map((a) => `'${a.replaceAll("'", "'\\''")}'`);
  const command = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec '${process.execPath}' '${selfPath}' ${argv.join(' ')}`;
  const child = spawn('bash', ['-c', command], {
    stdio: 'inherit',
    env: { ...process.env, SOAK_ULIMIT_DONE: '1' },
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.once('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  await main();
}
