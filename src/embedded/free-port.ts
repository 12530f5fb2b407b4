import { readFileSync } from 'node:fs';
import net from 'node:net';
import { mayListen } from './until-port-free.js';

// The kernel's range of client ports (Linux: /proc/sys/net/ipv4/ip_local_port_range). A port
// the kernel picks for a listener (port 0) comes from it too, so between the probe's close and
// the server's bind any outgoing connection of the machine could take it, and the server then
// failed to start with "could not bind … Address already in use". Below the range, only another
// listener can.
function clientPortsFrom(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low)) return low;
  } catch {
    // Not Linux: IANA's dynamic range, which macOS and Windows use.
  }
  return 49152;
}

const lowestPort = 10_000;
// Ports handed out by this process: servers started side by side each probe before any binds.
const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now, for a throwaway server: one below
 * the kernel's range of client ports, which no outgoing connection takes meanwhile.
 *
 * @example await freePort() // 23817
 */
export async function freePort(): Promise<number> {
  const below = clientPortsFrom() - lowestPort;
  for (let attempt = 0; below > 1000 && attempt < 50; attempt += 1) {
    const port = lowestPort + Math.floor(Math.random() * below);
    // Taken before the probe: a call beside this one must not probe, and hand out, the same.
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await mayListen(port)) return port;
    handedOut.delete(port);
  }
  // A range that leaves no room below it: the kernel's pick, as before.
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
