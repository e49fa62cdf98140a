/** Aedes for the benchmark, default options. Usage: aedes.ts <port>. Prints "ready <port>". */
import net from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2]);
const aedes = await Aedes.createBroker();
const server = net.createServer(aedes.handle);
server.on('connection', (socket) => socket.setNoDelay(true));
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
process.stdout.write(`ready ${port}\n`);

const stop = (): void => {
  server.close();
  aedes.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
