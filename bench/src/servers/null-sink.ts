/**
 * The null sink: reads and discards, answering just enough MQTT for the publishers (CONNACK,
 * PUBACK, PUBREC, PUBCOMP). It measures the load generator's own ceiling. Usage: null-sink.ts <port>.
 */
import net from 'node:net';
import { FrameReader, TYPE_PUBLISH, TYPE_PUBREL, writeAck } from '../load/protocol.js';

const CONNECT = 1;
const PINGREQ = 12;
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const PINGRESP = Buffer.from([0xd0, 0x00]);

const port = Number(process.argv[2]);
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let acks: Buffer = Buffer.allocUnsafe(64 * 1024);
  let len = 0;
  const ack = (firstByte: number, id: number): void => {
    if (len + 4 > acks.length) {
      const grown = Buffer.allocUnsafe(acks.length * 2);
      acks.copy(grown, 0, 0, len);
      acks = grown;
    }
    len = writeAck(acks, len, firstByte, id);
  };
  const reader = new FrameReader((buf, start, body) => {
    const first = buf[start]!;
    const type = first >> 4;
    if (type === TYPE_PUBLISH) {
      const qos = (first >> 1) & 3;
      if (qos > 0) ack(qos === 1 ? 0x40 : 0x50, buf.readUInt16BE(body + 2 + buf.readUInt16BE(body)));
    } else if (type === TYPE_PUBREL) ack(0x70, buf.readUInt16BE(body));
    else if (type === CONNECT) socket.write(CONNACK);
    else if (type === PINGREQ) socket.write(PINGRESP);
  });
  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk);
    if (len > 0) {
      socket.write(Buffer.from(acks.subarray(0, len)));
      len = 0;
    }
  });
  socket.on('error', () => undefined);
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`ready ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
