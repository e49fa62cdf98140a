/**
 * End to end: a real browser (Debian's chromium driven by playwright-core) runs MQTT.js's browser
 * bundle in a page and talks to the server over WebSocket.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClientPool, Inbox, skipWithout, waitUntil, withTimeout } from './helpers/clients.js';
import { startTestServer } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const missing = skipWithout(CHROMIUM);

const PAGE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'browser', 'index.html');
// The browser bundle (an IIFE defining `mqtt`); the package's exports do not list dist/, so go via package.json.
const BUNDLE = join(
  dirname(createRequire(import.meta.url).resolve('mqtt/package.json')),
  'dist',
  'mqtt.min.js',
);

let server: Awaited<ReturnType<typeof startTestServer>> | undefined;
let http: Server | undefined;
let httpOrigin = '';
let browser: Browser | undefined;
let context: BrowserContext | undefined;
const pages: Page[] = [];
const pool = new ClientPool();

afterEach(async () => {
  await Promise.all(pages.splice(0).map((p) => p.close().catch(() => undefined)));
  await pool.closeAll();
});

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await new Promise<void>((resolve) => (http === undefined ? resolve() : http.close(() => resolve())));
  http?.closeAllConnections();
  await server?.stop();
});

describe.skipIf(missing)('a browser page with MQTT.js over WebSocket', () => {
  beforeAll(async () => {
    server = await startTestServer();
    const files: Record<string, { type: string; body: Buffer }> = {
      '/index.html': { type: 'text/html; charset=utf-8', body: readFileSync(PAGE) },
      '/mqtt.min.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(BUNDLE) },
    };
    http = createServer((request, response) => {
      const file = files[new URL(request.url ?? '/', 'http://x').pathname];
      if (file === undefined) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body);
    });
    await new Promise<void>((resolve) => http!.listen(0, '127.0.0.1', resolve));
    const address = http.address();
    httpOrigin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    browser = await withTimeout(
      chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
        timeout: 15_000,
      }),
      16_000,
      'chromium to launch',
    );
    // One context for the file: its pages share a renderer process, which is cheaper to open.
    context = await browser.newContext();
  });

  async function openPage(clientId: string, will?: string): Promise<Page> {
    const page = await context!.newPage();
    pages.push(page);
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    const query = new URLSearchParams({
      url: server!.wsUrl,
      id: clientId,
      ...(will === undefined ? {} : { will }),
    });
    await page.goto(`${httpOrigin}/index.html?${query}`, { timeout: 10_000 });
    try {
      await page.waitForFunction(
        () => (globalThis as unknown as { e2e: { subscribed: boolean } }).e2e.subscribed,
        null,
        {
          timeout: 8000,
          polling: 50,
        },
      );
    } catch (error) {
      const state = await page
        .evaluate(() => (globalThis as unknown as { e2e: { errors: string[] } }).e2e.errors)
        .catch(() => []);
      throw new Error(
        `the page did not connect and subscribe: ${String(error)}; page errors: ${[...errors, ...state].join('; ')}`,
      );
    }
    return page;
  }

  it('[MQTT-6.0.0-1] the page connects over ws://…/mqtt, receives from Node and publishes to Node', async () => {
    const page = await openPage('browser-page-1');
    expect(
      await page.evaluate(() => (globalThis as unknown as { e2e: { granted: number[] } }).e2e.granted),
    ).toEqual([1]);
    const connection = [...server!.broker.connections.values()].find((c) => c.clientId === 'browser-page-1');
    expect(connection?.protocol).toBe(2); // WS

    const node = await pool.connect(server!.url, { clientId: 'browser-node-1' });
    const inbox = new Inbox(node);
    await node.subscribeAsync('browser/to-node/#', { qos: 1 });

    await node.publishAsync('browser/to-page/greeting', 'hello from Node – ü 😀', { qos: 1 });
    await page.waitForFunction(
      () => (globalThis as unknown as { e2e: { received: unknown[] } }).e2e.received.length >= 1,
      null,
      {
        timeout: 5000,
        polling: 50,
      },
    );
    const received = await page.evaluate(
      () => (globalThis as unknown as { e2e: { received: unknown[] } }).e2e.received,
    );
    expect(received).toEqual([
      { topic: 'browser/to-page/greeting', payload: 'hello from Node – ü 😀', qos: 1, retain: false },
    ]);

    await page.evaluate(() =>
      (
        globalThis as unknown as { e2e: { publish(t: string, p: string, q: number): Promise<boolean> } }
      ).e2e.publish('browser/to-node/reply', 'hello from the browser', 2),
    );
    const reply = await inbox.first('browser/to-node/reply');
    expect(reply.payload.toString()).toBe('hello from the browser');
    expect(reply.packet.qos).toBe(1); // granted QoS 1 caps the QoS 2 publish [MQTT-3.8.4-6]
  });

  it("[MQTT-3.1.2-8] closing the browser tab (WebSocket gone, no DISCONNECT) publishes the page's will", async () => {
    const node = await pool.connect(server!.url, { clientId: 'browser-node-2' });
    const inbox = new Inbox(node);
    await node.subscribeAsync('browser/will/#', { qos: 1 });
    const page = await openPage('browser-page-2', 'browser/will/page-2');
    await page.close();
    const will = await inbox.first('browser/will/page-2');
    expect(will.payload.toString()).toBe('page gone');
    await waitUntil(
      () => ![...server!.broker.connections.values()].some((c) => c.clientId === 'browser-page-2'),
      3000,
      'the page connection to be gone',
    );
  });
});
