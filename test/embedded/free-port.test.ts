import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/free-port.js';

// A port the kernel picked (port 0) came from its range of client ports: an outgoing
// connection could take it before the test server bound it, which then failed to start.
describe('freePort', () => {
  it("gives ports below the kernel's range of client ports, each once, that a server can listen on", async () => {
    const [clientPortsFrom] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) expect(port).toBeLessThan(clientPortsFrom!);
    expect(new Set(ports).size).toBe(ports.length);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(ports[0], '127.0.0.1', resolve));
    await new Promise((resolve) => server.close(resolve));
  });
});
