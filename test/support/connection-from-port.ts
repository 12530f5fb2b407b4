import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

/** A TCP connection of this machine whose local end holds a given port, as an outgoing connection's would. */
export interface ConnectionFromPort {
  /** Closes it with a reset: the port is free at once, with no TIME_WAIT. */
  reset(): Promise<void>;
  /** Closes it first, as a client ending its session does: the port stays held in TIME_WAIT for 60 s. */
  close(): Promise<void>;
}

// Perl (Debian's perl-base, always installed) rather than Node: libuv sets SO_REUSEADDR on every
// socket it binds, and a socket with it does not hold its port against a listener that has it
// too. An outgoing connection whose local port the kernel picked has none, and holds it.
const perlConnection = `
use IO::Socket::INET; use Socket;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ARGV[0], LocalAddr => '127.0.0.1', LocalPort => $ARGV[1], Proto => 'tcp') or die "connect: $@\\n";
$| = 1; print "connected\\n";
my $how = <STDIN>;
setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $how =~ /reset/;
close $s; print "closed\\n";
`;

/**
 * Opens a connection from 127.0.0.1 at `port` to a listener of its own, as an outgoing
 * connection the kernel gave that port would be, for tests of what a held port does to a
 * server that would listen on it.
 *
 * @example
 * const held = await connectionFromPort(port)
 * try { … } finally { await held.reset() }
 */
export async function connectionFromPort(port: number): Promise<ConnectionFromPort> {
  const peer = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.on('end', () => socket.end());
  });
  peer.listen(0, '127.0.0.1');
  await once(peer, 'listening');
  const child = spawn('perl', ['-e', perlConnection, String((peer.address() as net.AddressInfo).port), String(port)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => output.includes('connected\n') && resolve());
    // A perl that could not be started at all rejects `exited` itself.
    void exited.then(() => reject(new Error(`could not connect from port ${port}: ${errors.trim()}`)), reject);
  }).catch((error: unknown) => {
    peer.close();
    throw error;
  });
  let closing: Promise<void> | undefined;
  const end = (how: 'reset' | 'close') =>
    (closing ??= (async () => {
      child.stdin.end(`${how}\n`);
      await exited;
      await new Promise((resolve) => peer.close(resolve));
    })());
  return { reset: () => end('reset'), close: () => end('close') };
}
