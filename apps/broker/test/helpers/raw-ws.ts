/**
 * A hand-made WebSocket client over a raw TCP socket (RFC 6455, client frames masked), for checking
 * MQTT over WebSocket frame by frame: which subprotocol the server selects, packets split across or
 * packed into frames, and frames of the wrong type.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { rawSocket, waitUntil, withTimeout } from './clients.js';

export class RawWebSocket {
  /** The HTTP response head of the upgrade. */
  responseHead = '';
  /** Payload bytes of every binary frame the server sent, concatenated. */
  data = Buffer.alloc(0);
  closed = false;
  /** Opcodes of the frames received. */
  readonly opcodes: number[] = [];
  private buffer = Buffer.alloc(0);
  private upgraded = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.closed = true;
    });
  }

  static async open(port: number, path = '/mqtt', protocols = 'mqtt'): Promise<RawWebSocket> {
    const socket = await rawSocket(port);
    const ws = new RawWebSocket(socket);
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Protocol: ${protocols}\r\n\r\n`,
    );
    await waitUntil(() => ws.upgraded || ws.closed, 3000, 'the WebSocket upgrade');
    return ws;
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (!this.upgraded) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.responseHead = this.buffer.subarray(0, end).toString('latin1');
      this.buffer = this.buffer.subarray(end + 4);
      this.upgraded = true;
    }
    for (;;) {
      if (this.buffer.length < 2) return;
      const opcode = this.buffer[0]! & 0x0f;
      let len = this.buffer[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (this.buffer.length < 4) return;
        len = this.buffer.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (this.buffer.length < 10) return;
        len = Number(this.buffer.readBigUInt64BE(2));
        at = 10;
      }
      if (this.buffer.length < at + len) return;
      const payload = this.buffer.subarray(at, at + len);
      this.buffer = this.buffer.subarray(at + len);
      this.opcodes.push(opcode);
      if (opcode === 2 || opcode === 0) this.data = Buffer.concat([this.data, payload]);
      // A Close frame: answer it as any WebSocket client does (RFC 6455 5.5.1).
      if (opcode === 8 && !this.socket.destroyed) this.frame(Buffer.from(payload), 8);
    }
  }

  /** Sends one frame (binary by default), masked as a client must. */
  frame(payload: Buffer, opcode = 2, fin = true): void {
    const mask = randomBytes(4);
    const head: number[] = [(fin ? 0x80 : 0) | opcode];
    if (payload.length < 126) head.push(0x80 | payload.length);
    else head.push(0x80 | 126, payload.length >> 8, payload.length & 0xff);
    const masked = Buffer.from(payload);
    for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i % 4]!;
    this.socket.write(Buffer.concat([Buffer.from(head), mask, masked]));
  }

  /** Waits until the binary data received holds at least `n` bytes. */
  async bytes(n: number, ms = 3000): Promise<Buffer> {
    await waitUntil(() => this.data.length >= n || this.closed, ms, `${n} bytes over WebSocket`);
    return this.data;
  }

  async expectClosed(ms = 3000): Promise<void> {
    await withTimeout(
      new Promise<void>((resolve) => (this.closed ? resolve() : this.socket.once('close', () => resolve()))),
      ms,
      'the server to close the WebSocket connection',
    );
  }

  close(): void {
    this.socket.destroy();
  }
}
