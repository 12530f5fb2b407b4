import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { ChecksumMismatchError, ConfigError, DownloadError } from '../../errors.js';
import { type ChecksumRecord, parseChecksumText, readChecksumText, writeChecksumFile } from '../files/checksum-file.js';
import { keptOutput } from '../files/kept-output.js';
import { byteProgress, formatBytes } from '../files/progress-reporter.js';
import { publishFile } from '../files/publish-file.js';
import { stallWatch } from '../files/stall-watch.js';
import { isProcessAlive } from '../../process-alive.js';
import { killProcessTree } from '../../process-tree.js';
import { shellQuote } from '../../shell-quote.js';
import { defaultRemoteBackupDir } from './default-remote-backup-dir.js';
import { sshArguments, sshFailure, type SshTarget } from './ssh-connection.js';
import { writeStreamToFile } from '../files/write-stream-to-file.js';
import { optionMs } from '../../db/option-ms.js';

/** What {@link downloadBackup} copies, from where, and how it reaches the host. */
export interface DownloadOptions extends Omit<SshTarget, 'host'> {
  /** The host to copy from; `localhost` copies from `remoteDir` on this machine, without SSH. */
  host: string;
  /** Name of the backup file in `remoteDir` (a plain name: no folders). */
  file: string;
  /** Folder on the host holding the backups (default `/var/backups/kennwilliamson`). */
  remoteDir?: string | undefined;
  /** Local folder to copy into; created if missing. */
  backupDir: string;
  /** Receives progress lines. */
  log?: ((line: string) => void) | undefined;
  /** Aborting stops the copy and removes the partial file. */
  signal?: AbortSignal | undefined;
  /**
   * Over SSH: how long the copy waits for the file's next bytes before it stops ssh and fails
   * (default 60 000 ms); each such span must also bring 1 KiB a second on average, or the copy
   * fails the same way. SSH keepalives do not bound that wait: sshd answers them itself, so a
   * remote `cat` stuck on a hung disk or NFS mount keeps a live session that sends nothing.
   */
  stallTimeoutMs?: number | undefined;
}

/** A copied backup. */
export interface DownloadResult {
  /** Absolute local path. */
  file: string;
  bytes: number;
  sha256: string;
  /** Whether the copy was checked against a `.sha256` from the host (false: the host had none). */
  verified: boolean;
  /** The local `.sha256`, when the host had one. */
  checksumFile?: string | undefined;
}

interface SourceFile {
  size: number;
  checksum: ChecksumRecord | undefined;
  /** The content, a promise that rejects when reading it failed, and a way to stop reading. */
  stream: Readable;
  done: Promise<void>;
  cancel: () => void;
}

const metadataTimeoutMs = 60_000;
const defaultStallTimeoutMs = 60_000;
const notFoundExit = 44;
const stderrTailChars = 8192;

async function checkKey(key: string): Promise<void> {
  const info = await stat(key).catch((error: NodeJS.ErrnoException) => {
    throw new DownloadError('key', `cannot read the SSH key ${key}: ${error.code === 'ENOENT' ? 'no such file' : error.code}`, { cause: error });
  });
  if (!info.isFile()) throw new DownloadError('key', `the SSH key ${key} is not a file`);
  // ssh silently skips a private key others may read and then fails with "Permission denied";
  // say the real reason instead.
  if ((info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8);
    throw new DownloadError('key', `the SSH key ${key} is readable by other users (mode ${mode}), so ssh refuses it; run chmod 600 ${key}`);
  }
  const head = await readFile(key, 'latin1')
    .then((text) => text.slice(0, 64))
    .catch((error: NodeJS.ErrnoException) => {
      throw new DownloadError('key', `cannot read the SSH key ${key}: ${error.code}`, { cause: error });
    });
  if (!head.includes('PRIVATE KEY')) throw new DownloadError('key', `${key} is not a private key file (it should start with -----BEGIN … PRIVATE KEY-----)`);
}

async function localFile(source: string, label: string): Promise<SourceFile> {
  const info = await stat(source).catch((error: NodeJS.ErrnoException) => {
    throw new DownloadError('not-found', `${label} not found${error.code === 'ENOENT' ? '' : ` (${error.code})`}`, { cause: error });
  });
  if (!info.isFile()) throw new DownloadError('not-found', `${label} is not a file`);
  // No .sha256 is an unverified copy; one that cannot be read is an error, not the same.
  const text = await readChecksumText(source).catch((error: NodeJS.ErrnoException) => {
    throw new DownloadError('transfer', `cannot read ${label}.sha256 (${error.code ?? error.message})`, { cause: error });
  });
  const checksum = text === undefined ? undefined : parseChecksumText(text, `${label}.sha256`);
  const stream = createReadStream(source);
  return {
    size: info.size,
    checksum,
    stream,
    done: Promise.resolve(),
    cancel: () => stream.destroy(),
  };
}

function runSsh(target: SshTarget, command: string, signal?: AbortSignal) {
  // Stopped with what it started: a ProxyCommand (or ProxyJump's second ssh) is ssh's child,
  // holds ssh's stderr open, and outlived ssh's SIGKILL alone, so that 'close' never came, and a
  // stalled download (or the command, after printing its error) waited for ever, with the
  // proxy's connection to the host left open. ssh stays in this process's group, where a kill
  // of the whole job (a supervisor's, `timeout`'s) reaches it too. SIGKILL: ssh has nothing of
  // ours to clean up, and a stopped one never acts on SIGTERM.
  const child = spawn('ssh', sshArguments(target, command), { stdio: ['ignore', 'pipe', 'pipe'] });
  // Whatever survives (one that left the tree) must not hold the pipes, and 'close', open.
  const stop = () => killProcessTree(child);
  // Only the last words, where ssh's and the host's reason is: the host writes to this stream
  // as much as it likes (ssh passes the remote command's stderr on).
  const stderr = keptOutput({ head: 0, tail: stderrTailChars });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.add(chunk));
  const exited = new Promise<{ code: number | null; stderr: string; error?: Error }>((resolve) => {
    let error: Error | undefined;
    child.on('error', (e) => (error = e));
    child.on('close', (code) => {
      signal?.removeEventListener('abort', stop);
      resolve({ code, stderr: stderr.text(), ...(error ? { error } : {}) });
    });
  });
  signal?.addEventListener('abort', stop, { once: true });
  if (signal?.aborted) stop();
  return { child, exited, stop };
}

function failure(exit: { code: number | null; stderr: string; error?: Error }, target: SshTarget, label: string): DownloadError {
  if (exit.error) return new DownloadError('transfer', `could not run ssh: ${exit.error.message}`, { cause: exit.error });
  if (exit.code === notFoundExit) return new DownloadError('not-found', `${label} not found on ${target.host}`);
  if (exit.code === 255 || exit.code === null) return sshFailure(exit.stderr, target);
  return new DownloadError('transfer', `reading ${label} on ${target.host} failed (exit ${exit.code}): ${exit.stderr.trim()}`);
}

// One SSH session answers everything, so size, checksum and content are read at the same
// moment: a header of two lines (the size; the .sha256 line, or an empty line when there is
// none), then the bytes. Exit 44 means no such file.
function remoteScript(remotePath: string): string {
  const quoted = shellQuote(remotePath);
  return (
    `f=${quoted}; [ -f "$f" ] || exit ${notFoundExit}; wc -c < "$f" || exit 1; ` +
    `if [ -f "$f.sha256" ]; then printf '%s\\n' "$(head -n 1 "$f.sha256")"; else echo; fi; exec cat -- "$f"`
  );
}

// A host that keeps sending, but a byte at a time (one every 59 s passed a watch for silence
// alone, so 1 GB took for ever while it held ssh and a .part open): each `stallTimeoutMs` of
// waiting must bring at least this much a second on average. A link slower than that takes a
// day over a backup of 100 MB.
const minimumBytesPerSecond = 1024;

// Calls `onStall` with the bytes received (`received` of them before the watch began), and the
// bytes of the last `stallTimeoutMs`, once `stdout` has brought nothing for that long (a chunk
// only notes the time, read by one timer set again for the time left when a chunk came
// meanwhile: no timer work per chunk), or less than the minimum rate's worth in one such span
// (another timer, one per span). A paused `stdout` is the local side falling behind (a slow
// disk), not the host, so such time does not count and such a span is not judged.
function watchForStall(
  stdout: Readable,
  stallTimeoutMs: number,
  received: number,
  onStall: (received: number, inSpan: number) => void,
): void {
  const spanWorth = Math.ceil((stallTimeoutMs / 1000) * minimumBytesPerSecond);
  const waitedFor = () => !stdout.isPaused();
  let spanStart = received;
  // A span in which the copy held the host back (a slow BACKUP_DIR) for any time is not judged.
  let heldBack = false;
  const onPause = () => void (heldBack = true);
  const stall = (inSpan: number) => {
    stop();
    onStall(received, inSpan);
  };
  const silence = stallWatch(stallTimeoutMs, () => stall(0), waitedFor);
  const trickle = setInterval(() => {
    if (waitedFor() && !heldBack && received - spanStart < spanWorth) return stall(received - spanStart);
    spanStart = received;
    heldBack = !waitedFor();
  }, stallTimeoutMs);
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    silence.progress();
  };
  const stop = () => {
    silence.stop();
    clearInterval(trickle);
    stdout.off('data', onData);
    stdout.off('pause', onPause);
  };
  stdout.on('data', onData);
  stdout.on('pause', onPause);
  stdout.once('close', stop);
}

async function remoteFile(
  target: SshTarget,
  remotePath: string,
  label: string,
  stallTimeoutMs: number,
  signal?: AbortSignal,
): Promise<SourceFile> {
  const { child, exited, stop } = runSsh(target, remoteScript(remotePath), signal);
  const stdout = child.stdout;
  // The content after the header. Not stdout itself, paused: Node resumes (and so drains) a
  // child's paused stdout when the child exits, which for a small file is before the copy starts.
  const body = new PassThrough();
  const done = exited.then((exit) => {
    // Stopped by the caller's signal: said as such, not as what ssh's end looks like.
    if (signal?.aborted) throw new DownloadError('transfer', 'download interrupted; nothing was written');
    if (exit.code !== 0) throw failure(exit, target, label);
  });
  done.catch(() => undefined); // observed below; never an unhandled rejection
  const header = await new Promise<[string, string]>((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => {
      stop();
      reject(new DownloadError('connect', `no answer from ${target.host} within ${metadataTimeoutMs / 1000} s`));
    }, metadataTimeoutMs);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const first = buffered.indexOf(10);
      const second = first < 0 ? -1 : buffered.indexOf(10, first + 1);
      if (second < 0) {
        if (buffered.length > 4096) {
          // Not the header: stop ssh and the timer, or both would keep the process alive.
          clearTimeout(timer);
          stdout.off('data', onData);
          stop();
          reject(new DownloadError('transfer', `unexpected answer from ${target.host}`));
        }
        return;
      }
      clearTimeout(timer);
      stdout.off('data', onData);
      // What came after the header is the file's first bytes.
      const start = buffered.subarray(second + 1);
      if (start.length > 0) body.write(start);
      stdout.pipe(body);
      watchForStall(stdout, stallTimeoutMs, start.length, (received, inSpan) => {
        stop();
        const seconds = stallTimeoutMs / 1000;
        body.destroy(
          new DownloadError(
            'transfer',
            inSpan === 0
              ? `no data from ${target.host} for ${seconds} s after ${formatBytes(received)} of ${label}: ` +
                  'the host may be stuck reading the file (a hung disk or network mount); the copy was stopped'
              : `only ${formatBytes(inSpan)} from ${target.host} in ${seconds} s, after ${formatBytes(received - inSpan)} of ${label}: ` +
                  `a copy slower than ${minimumBytesPerSecond / 1024} kB/s is taken for a failing host, disk or network; the copy was stopped`,
          ),
        );
      });
      resolve([buffered.subarray(0, first).toString('utf8'), buffered.subarray(first + 1, second).toString('utf8')]);
    };
    stdout.on('data', onData);
    done.then(
      () => {
        clearTimeout(timer);
        reject(new DownloadError('transfer', `unexpected answer from ${target.host}`));
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
  let size: number;
  let checksum: ChecksumRecord | undefined;
  try {
    size = Number(header[0].trim());
    if (!Number.isInteger(size)) throw new DownloadError('transfer', `unexpected answer from ${target.host}: ${header[0]}`);
    checksum = header[1].trim() ? parseChecksumText(header[1], `${label}.sha256`) : undefined;
  } catch (error) {
    stop();
    throw error;
  }
  return {
    size,
    checksum,
    stream: body,
    done,
    cancel: () => {
      stop();
      body.destroy();
    },
  };
}

// What a copy into `folder` may take: the space free to this process, less what stays free
// for the machine's other writers (a twentieth of the disk, at most 1 GiB).
async function roomInBackupDir(folder: string): Promise<{ bytes: number; kept: number }> {
  const disk = await statfs(folder);
  // Node's statfs gives f_bsize, the unit of the block counts on Linux's filesystems.
  const kept = Math.min(2 ** 30, Math.floor((disk.blocks * disk.bsize) / 20));
  return { bytes: Math.max(0, disk.bavail * disk.bsize - kept), kept };
}

// Who writes a partial file: this host and process. BACKUP_DIR may be shared (a volume, NFS),
// and only this host can tell whether one of its processes still runs.
const partOwner = () => `${os.hostname()}.${process.pid}`;

// The partial files that killed downloads of `final` left: the older runs' `<file>.part`,
// and `.<file>.<host>.<pid>.<random>.part` of a process of this host that has ended.
async function removeLeftParts(final: string): Promise<void> {
  const name = path.basename(final);
  const folder = path.dirname(final);
  const ours = `.${name}.${os.hostname()}.`;
  const left = (await readdir(folder)).filter((entry) => {
    if (entry === `${name}.part`) return true;
    if (!entry.startsWith(ours)) return false;
    const pid = /^(\d+)\.[0-9a-f]{8}\.part$/.exec(entry.slice(ours.length))?.[1];
    return pid !== undefined && !isProcessAlive(Number(pid));
  });
  await Promise.all(left.map((entry) => rm(path.join(folder, entry), { force: true })));
}

/**
 * Copies a backup (and its `.sha256`, when there is one) from `remoteDir` on a host into
 * `backupDir`: over SSH (`ssh … cat`, BatchMode, strict host key checking, a bounded connect,
 * a bounded wait for the host's first answer, and `stallTimeoutMs` for each wait for more of
 * the file), or from a local folder when `host` is `localhost`. The copy goes to
 * a partial file of its own (`.<file>.<host>.<pid>.<random>.part`), is fsynced and checked against the
 * remote size and checksum, and only then linked to its name, which a download of the same
 * file that finished first makes it refuse (`exists`); on any failure (unreadable key, unknown host key, refused login, missing remote
 * file, a remote size larger than `backupDir`'s disk can take, a copy stalled past `stallTimeoutMs`, more bytes than the remote size,
 * checksum mismatch) it throws
 * {@link DownloadError} and leaves no partial file; the copy stops at the first byte past that size.
 *
 * @example
 * await downloadBackup({ host: 'db.example.org', user: 'backup', key: '/home/me/.ssh/backups',
 *   file: 'kennwilliamson_production_20250914T134643.512Z.dump', backupDir: 'backups' })
 */
export async function downloadBackup(options: DownloadOptions): Promise<DownloadResult> {
  const log = options.log ?? (() => undefined);
  // A plain name: it is joined to folders here and on the host, and quoted for its shell. A
  // backup's starts with its database's name, percent-encoded where it holds more than letters,
  // digits, '_' and '-' (so it may start with '_' or '%', never with '.').
  if (!/^[A-Za-z0-9_%][A-Za-z0-9._+%-]*$/.test(options.file) || options.file.endsWith('.sha256')) {
    throw new ConfigError('FILE', `'${options.file}' is not a backup file name (a plain name such as kennwilliamson_production_20250914T134643.512Z.dump)`);
  }
  const stallTimeoutMs = optionMs('stallTimeoutMs', options.stallTimeoutMs ?? defaultStallTimeoutMs);
  const remoteDir = options.remoteDir ?? defaultRemoteBackupDir;
  const remotePath = path.posix.join(remoteDir, options.file);
  const isLocal = options.host === 'localhost';

  // Owner only, as for db:backup: a backup holds password hashes.
  await mkdir(options.backupDir, { recursive: true, mode: 0o700 });
  const final = path.join(path.resolve(options.backupDir), options.file);
  const exists = () => new DownloadError('exists', `${final} already exists; remove it first to download it again`);
  if (existsSync(final)) throw exists();
  // A partial file of this download's own: another download of the same file (a retry, or a
  // cron run beside a manual one) writes to its own, and never removes or publishes this one.
  const part = path.join(path.dirname(final), `.${options.file}.${partOwner()}.${randomBytes(4).toString('hex')}.part`);

  if (!isLocal && options.key) await checkKey(options.key);
  await removeLeftParts(final);
  const target: SshTarget = { ...options, host: options.host };
  const source = isLocal
    ? await localFile(remotePath, remotePath)
    : await remoteFile(target, remotePath, remotePath, stallTimeoutMs, options.signal);
  // The size is the host's word, and it sets the copy's bound (below): a compromised host that
  // announced a petabyte would fill BACKUP_DIR's disk all the same. A copy must leave the disk
  // some room (what keeps the machine's other writers going), or it is not begun.
  // A folder whose free space cannot be asked (statfs unsupported, as on some FUSE mounts) is
  // not refused for it: the announced size still bounds the copy.
  const room = await roomInBackupDir(path.dirname(final)).catch(() => undefined);
  if (room !== undefined && source.size > room.bytes) {
    source.cancel();
    throw new DownloadError(
      'space',
      `${isLocal ? remotePath : `${options.host}:${remotePath}`} is ${formatBytes(source.size)}, by ${isLocal ? 'its size' : "the host's word"}, ` +
        `more than the ${formatBytes(room.bytes)} that ${path.dirname(final)} can take and keep ${formatBytes(room.kept)} of its disk free; nothing was copied`,
    );
  }
  log(`copying ${isLocal ? remotePath : `${options.host}:${remotePath}`} (${formatBytes(source.size)})`);

  try {
    const { stream, done, cancel } = source;
    const written = await writeStreamToFile(stream, part, {
      onBytes: byteProgress('copied', source.size, log),
      // The size is the host's word, not a bound it keeps: one that announces 100 bytes and then
      // sends without end would fill BACKUP_DIR's disk before the sizes were compared. Locally,
      // a file that grows while it is read (a /proc file is "0 bytes" too) is stopped the same way.
      limit: {
        bytes: source.size,
        error: () =>
          new DownloadError(
            'transfer',
            isLocal
              ? `more than the ${source.size} bytes ${remotePath} had when the copy began arrived; the copy was stopped`
              : `more than the announced ${source.size} bytes of ${remotePath} arrived from ${options.host}; the copy was stopped`,
          ),
      },
      ...(options.signal ? { signal: options.signal } : {}),
    }).catch(async (error: Error) => {
      // Stop ssh (a full disk must not leave it running); when ssh itself failed, its
      // reason beats the stream's "premature close". Not when the copy stopped it (more bytes
      // than announced, a stall): then ssh's end says nothing, whatever its host wrote to
      // stderr before ("Permission denied" would read as a refused login).
      cancel();
      const stoppedByCopy = error instanceof DownloadError;
      await done.catch((sshError: unknown) => {
        if (!stoppedByCopy && sshError instanceof DownloadError && sshError.reason !== 'transfer') throw sshError;
      });
      throw error;
    });
    await done;
    if (written.bytes !== source.size) {
      throw new DownloadError('transfer', `the copy is incomplete: ${written.bytes} of ${source.size} bytes arrived`);
    }
    if (source.checksum) {
      const mismatch =
        source.checksum.sha256 !== written.sha256 || path.basename(source.checksum.fileName) !== options.file;
      if (mismatch) {
        throw new DownloadError(
          'checksum',
          `the copy does not match ${options.file}.sha256 on the host: ${new ChecksumMismatchError(options.file, source.checksum.sha256, written.sha256).message}`,
        );
      }
    }
    await publishFile(part, final).catch((error: NodeJS.ErrnoException) => {
      // Another download of the file finished first.
      throw error.code === 'EEXIST' ? exists() : error;
    });
    const checksumFile = source.checksum ? await writeChecksumFile(final, written.sha256) : undefined;
    log(
      source.checksum
        ? `downloaded ${final} (${formatBytes(written.bytes)}, sha256 verified)`
        : `downloaded ${final} (${formatBytes(written.bytes)}); the host had no ${options.file}.sha256, so the copy could not be verified` +
            (final.endsWith('.dump') ? ' (restore takes such a .dump only with --without-checksum)' : ''),
    );
    return { file: final, bytes: written.bytes, sha256: written.sha256, verified: Boolean(source.checksum), ...(checksumFile ? { checksumFile } : {}) };
  } catch (error) {
    await rm(part, { force: true });
    if (options.signal?.aborted) throw new DownloadError('transfer', 'download interrupted; the partial file was removed', { cause: error });
    throw error;
  }
}
