import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { inCi } from './in-ci.js';
import { onTheWayOut } from './on-the-way-out.js';
import { isProcessAlive } from '../../src/process-alive.js';
import { sleepSync } from './sleep-sync.js';

// Every chain this helper makes starts with this, then the owning process id: a run that was
// killed before its cleanup leaves chains that the next run recognises and removes.
const chainPrefix = 'KWT';

function iptables(args: string[]): string {
  // -w: wait for the xtables lock, which parallel test files may hold for a moment.
  return execFileSync('iptables', ['-w', '5', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Whether packets can be dropped here (`iptables`, as root, with netfilter), for
 * `describe.skipIf(!…)`. In CI a missing or unusable iptables fails the file instead of
 * skipping it (`.ci/run` installs Debian's package); elsewhere the file is skipped with a
 * warning, as the pooler project is without PgBouncer.
 */
export function packetFilterAvailable(purpose: string): boolean {
  try {
    iptables(['-S', 'INPUT']);
    return true;
  } catch (error) {
    const reason = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    if (inCi()) throw new Error(`${purpose} needs iptables (root, netfilter), which CI must provide (see .ci/run): ${reason}`);
    console.warn(`[packet-filter] iptables is not usable (${reason}): ${purpose} is skipped`);
    return false;
  }
}

/** Packets of some TCP connections dropped in both directions, until {@link SilentPartition.heal}. */
export interface SilentPartition {
  /** The chain holding the rules (unique to this partition). */
  chain: string;
  /** Removes every rule this partition added and checks they are gone (throws if not; call again); safe to call more than once. */
  heal(): void;
}

// The jump into a chain, exactly as silenceConnections adds it (and as `iptables -D` must repeat it).
function jumpRule(chain: string): string[] {
  return ['INPUT', '-i', 'lo', '-j', chain, '-m', 'comment', '--comment', `kw-test-partition:${chain}`];
}

/** Whether iptables lists the chain (a test's own, or one a killed run left behind). */
export function chainExists(chain: string): boolean {
  try {
    iptables(['-S', chain]);
    return true;
  } catch {
    return false;
  }
}

/** How many packets the rules of a partition's chain have dropped so far: iptables counts them. */
export function droppedPackets(chain: string): number {
  // With -v, each rule is listed with `-c <packets> <bytes>`.
  return [...iptables(['-S', chain, '-v']).matchAll(/ -c (\d+) \d+/g)].reduce((sum, [, packets]) => sum + Number(packets), 0);
}

/**
 * How many bytes the sending side of a loopback TCP connection (from `fromPort` to `toPort`)
 * has sent and not had acknowledged, as the kernel lists it (`/proc/net/tcp`'s tx_queue), or
 * undefined when no such established connection is listed. A partition that cuts an answer
 * still unacknowledged (loopback delays its ACK up to 40 ms) leaves the sender retransmitting
 * for the kernel's quarter of an hour, during which TCP keepalive never probes: a test of
 * keepalive waits for 0 before it drops the packets.
 *
 * @example await eventually(() => unacknowledgedBytes(serverPort, clientPort) === 0, "the server's answer is acknowledged")
 */
export function unacknowledgedBytes(fromPort: number, toPort: number): number | undefined {
  const end = (port: number) => `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue …; state 01 is ESTABLISHED.
    const [, local, remote, state, queues] = line.trim().split(/\s+/);
    if (local === end(fromPort) && remote === end(toPort) && state === '01') return Number.parseInt(queues!.split(':')[0]!, 16);
  }
  return undefined;
}

function jumpExists(chain: string): boolean {
  try {
    iptables(['-C', ...jumpRule(chain)]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes the chain and its jump, and checks that both are gone, trying again a few times (the
 * xtables lock held by a parallel test file, a rule still referring to the chain); throws when
 * they stay, so that a partition is never taken for healed while its rules still drop packets.
 * Synchronous, for the 'exit' handler.
 */
function removeChain(chain: string): void {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 5; attempt++) {
    try {
      while (jumpExists(chain)) iptables(['-D', ...jumpRule(chain)]);
      if (chainExists(chain)) {
        iptables(['-F', chain]);
        iptables(['-X', chain]);
      }
    } catch (error) {
      lastError = error;
    }
    if (!jumpExists(chain) && !chainExists(chain)) return;
    sleepSync(100 * attempt);
  }
  const reason = (lastError as { stderr?: string } | undefined)?.stderr?.trim() || String(lastError ?? 'still listed');
  throw new Error(`could not remove the iptables chain ${chain} (its rules still drop packets): ${reason}`);
}

// Chains of test processes that died before healing (a SIGKILLed worker): never another
// live process's.
function removeStaleChains(): void {
  for (const line of iptables(['-S']).split('\n')) {
    const match = new RegExp(`^-N (${chainPrefix}(\\d+)_[0-9a-f]+)$`).exec(line.trim());
    if (match && !isProcessAlive(Number(match[2]))) {
      try {
        removeChain(match[1]!);
      } catch (error) {
        console.warn(`[packet-filter] ${(error as Error).message}`);
      }
    }
  }
}

// Partitions not healed yet: healed by healAllPartitions (a test file's afterEach, for a test
// that timed out, whose own `finally` never runs) and, at the latest, when the process exits or
// is interrupted (Ctrl-C during `npm run bench:faults`).
const active = new Set<SilentPartition>();

/** Heals every partition this process made and has not healed yet; throws if a chain could not be removed (it stays listed, for a later try). */
export function healAllPartitions(): void {
  const failures: unknown[] = [];
  for (const partition of active) {
    try {
      partition.heal();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `could not heal ${failures.length} partition(s)`);
}

function healOnTheWayOut(): void {
  try {
    healAllPartitions();
  } catch (error) {
    process.stderr.write(`[packet-filter] ${(error as Error).message}; remove them by hand (iptables -S | grep ${chainPrefix})\n`);
  }
}

let exitHandlers = false;

// Installed with the first partition, so that importing this changes nothing.
function healOnExit(): void {
  if (exitHandlers) return;
  exitHandlers = true;
  onTheWayOut(healOnTheWayOut);
}

/**
 * Drops every packet of these TCP connections of 127.0.0.1 (each a client port to `serverPort`),
 * in both directions: they go silent (no FIN, no RST), as when a database fails over to another
 * host or a NAT forgets them, while new connections (new client ports) still work. A rule
 * names both ends of its connection, never a port alone: Linux gives a client port that one
 * connection holds to connections to other servers too (of 6,000 connections held open to 20
 * servers here, 1,088 got a port already in use), and a rule on the port alone would silence
 * those of the files running beside this one as well. The rules live in a chain of their
 * own, named after this process, and {@link SilentPartition.heal} removes exactly them; call
 * it in `finally`, and {@link healAllPartitions} in `afterEach` (a test that times out never
 * reaches its `finally`). A chain left by a killed process is removed by the next call here.
 *
 * @example
 * const partition = silenceConnections(5432, [51234, 51236])
 * try { … } finally { partition.heal() }
 */
export function silenceConnections(serverPort: number, clientPorts: readonly number[]): SilentPartition {
  if (clientPorts.length === 0) throw new Error('silenceConnections: no client port given');
  removeStaleChains();
  healOnExit();
  const chain = `${chainPrefix}${process.pid}_${randomBytes(3).toString('hex')}`;
  iptables(['-N', chain]);
  let healed = false;
  // Healed only once the rules are verifiably gone: a failed removal is tried again by the
  // next heal (afterEach, exit, a signal).
  const heal = () => {
    if (healed) return;
    removeChain(chain);
    healed = true;
    active.delete(partition);
  };
  const partition: SilentPartition = { chain, heal };
  active.add(partition);
  try {
    for (const clientPort of clientPorts) {
      for (const [from, to] of [
        [clientPort, serverPort],
        [serverPort, clientPort],
      ]) {
        iptables(['-A', chain, '-p', 'tcp', '-s', '127.0.0.1', '-d', '127.0.0.1', '--sport', String(from), '--dport', String(to), '-j', 'DROP']);
      }
    }
    // Loopback packets pass INPUT whichever way they go: one jump covers both directions.
    iptables(['-I', ...jumpRule(chain)]);
  } catch (error) {
    heal();
    throw error;
  }
  return partition;
}
