/**
 * A build log kept within a byte limit. The first half of the limit (the head) is kept and handed
 * out progressively for upload; after that only the last half (the tail) is kept, in a ring buffer,
 * and the middle is dropped. The build always runs to the end; the reader sees how it started, a
 * marker saying how much was cut, and how it ended.
 *
 * Sizes are UTF-8 bytes, and no multi-byte character is ever split. Memory stays bounded by the
 * limit however much is appended.
 */

export const DEFAULT_LOG_LIMIT_BYTES = 4 * 1024 * 1024;

/** Below this the head and tail would be too small to be of use (and the marker would dominate). */
export const MIN_LOG_LIMIT_BYTES = 1024;

/** A cut moves to a nearby line boundary when there is one within this many bytes. */
const MAX_LINE_SEARCH_BYTES = 16 * 1024;

const NEWLINE = 0x0a;

export interface BoundedLogOptions {
  /** Upper bound of head + tail, in UTF-8 bytes; default 4 MiB. */
  limitBytes?: number;
}

/** Chunks of output (64 KiB from a pipe) encode in place up to this size. */
const ENCODE_SCRATCH_BYTES = 256 * 1024;

export class BoundedLog {
  readonly limitBytes: number;
  private readonly headLimitBytes: number;
  private readonly tailLimitBytes: number;

  /**
   * The head as UTF-8 bytes, grown by doubling up to half the limit. Not a string grown with `+=`:
   * handing out its new part would then copy the whole head on every append (V8 flattens the
   * concatenation to slice it), a cost and a heap of garbage that grow with the head.
   */
  private head: Buffer = Buffer.alloc(0);
  private headBytes = 0;
  /** Bytes of the head already returned by `takeNewHead`. */
  private headTakenBytes = 0;
  /** Set once the head is full: everything after goes to the tail. */
  private headClosed = false;

  /** Allocated when the head closes; holds the last `tailLimitBytes` bytes after the head. */
  private ring: Buffer | undefined;
  private ringStart = 0;
  private ringLength = 0;
  /** Bytes pushed out of the ring by newer ones. */
  private overwrittenBytes = 0;
  /** The last byte pushed out: when it is a newline, the tail already starts at a line. */
  private lastOverwrittenByte: number | undefined;

  private appendedBytes = 0;
  /** A high surrogate that ended the last append: its pair is in the next one. */
  private pendingHighSurrogate = '';
  private scratch: Buffer | undefined;

  constructor(options: BoundedLogOptions = {}) {
    const limitBytes = options.limitBytes ?? DEFAULT_LOG_LIMIT_BYTES;
    if (!Number.isSafeInteger(limitBytes) || limitBytes < MIN_LOG_LIMIT_BYTES) {
      throw new RangeError(
        `The log limit must be a whole number of bytes, at least ${MIN_LOG_LIMIT_BYTES}; got ${limitBytes}.`,
      );
    }
    this.limitBytes = limitBytes;
    this.headLimitBytes = Math.floor(limitBytes / 2);
    this.tailLimitBytes = limitBytes - this.headLimitBytes;
  }

  append(chunk: string): void {
    let text = this.pendingHighSurrogate + chunk;
    this.pendingHighSurrogate = '';
    const lastCode = text.charCodeAt(text.length - 1);
    if (lastCode >= 0xd800 && lastCode <= 0xdbff) {
      // Encoding it alone would turn the character into U+FFFD; wait for the other half.
      this.pendingHighSurrogate = text.slice(-1);
      text = text.slice(0, -1);
    }
    if (text.length === 0) return;
    const bytes = this.encode(text);
    this.appendedBytes += bytes.length;
    if (this.headClosed) {
      this.pushTail(bytes);
      return;
    }
    const room = this.headLimitBytes - this.headBytes;
    if (bytes.length <= room) {
      this.pushHead(bytes);
      return;
    }
    // The head is full: end it at a line boundary near the limit if there is one, else at a character.
    let cut = characterStartAtOrBefore(bytes, room);
    const newline = cut > 0 ? bytes.lastIndexOf(NEWLINE, cut - 1) : -1;
    const lineStart = newline !== -1 ? newline + 1 : this.headEndsLine() ? 0 : -1;
    if (lineStart !== -1 && cut - lineStart <= this.lineSearchBytes()) cut = lineStart;
    this.pushHead(bytes.subarray(0, cut));
    this.headClosed = true;
    this.pushTail(bytes.subarray(cut));
  }

  /**
   * The UTF-8 bytes of `text`, in a buffer reused from call to call (valid until the next call):
   * a build that prints without end would otherwise allocate a new buffer for every chunk, and the
   * collector frees those lazily, so the runner's memory would climb with the log.
   */
  private encode(text: string): Buffer {
    if (text.length * 3 > ENCODE_SCRATCH_BYTES) return Buffer.from(text, 'utf8');
    this.scratch ??= Buffer.allocUnsafe(ENCODE_SCRATCH_BYTES);
    return this.scratch.subarray(0, this.scratch.write(text, 0, 'utf8'));
  }

  private pushHead(bytes: Buffer): void {
    const needed = this.headBytes + bytes.length;
    if (needed > this.head.length) {
      const grown = Buffer.alloc(
        Math.min(this.headLimitBytes, Math.max(needed, 2 * this.head.length, 64 * 1024)),
      );
      this.head.copy(grown, 0, 0, this.headBytes);
      this.head = grown;
    }
    bytes.copy(this.head, this.headBytes);
    this.headBytes = needed;
  }

  private headEndsLine(): boolean {
    return this.headBytes > 0 && this.head[this.headBytes - 1] === NEWLINE;
  }

  /** Head text not yet taken: append it to the uploaded log as it arrives. */
  takeNewHead(): string {
    const text = this.head.toString('utf8', this.headTakenBytes, this.headBytes);
    this.headTakenBytes = this.headBytes;
    return text;
  }

  /**
   * The text kept after the head: the last ≤ limit/2 bytes, starting at a line boundary (or at least
   * a character boundary) once something was dropped.
   */
  tail(): string {
    return Buffer.concat(this.tailParts()).toString('utf8');
  }

  /** Bytes appended in total. */
  get totalBytes(): number {
    return this.appendedBytes;
  }

  /** Bytes dropped from the middle: neither in the head nor in `tail()`. */
  get truncatedBytes(): number {
    if (!this.ring || this.overwrittenBytes === 0) return 0;
    return this.overwrittenBytes + this.tailSkipBytes();
  }

  get truncated(): boolean {
    return this.truncatedBytes > 0;
  }

  /** Bytes of log held in memory (head and tail); never more than `limitBytes`. */
  get bufferedBytes(): number {
    return this.headBytes + this.ringLength;
  }

  /**
   * What follows the head in `finalText()`: the tail, preceded by the truncation marker when the
   * middle was dropped. An uploader that appended every `takeNewHead()` appends this at the end.
   */
  textAfterHead(): string {
    return Buffer.concat(this.partsAfterHead()).toString('utf8');
  }

  /**
   * `textAfterHead()` as UTF-8 bytes, in order: the marker's, then views of the ring (valid until
   * the next append). What tail.txt holds, handed on without copying it into one buffer or a string.
   */
  partsAfterHead(): Buffer[] {
    const truncatedBytes = this.truncatedBytes;
    const tail = this.tailParts();
    if (truncatedBytes === 0) return tail;
    const marker = truncationMarker(truncatedBytes, this.limitBytes, this.headEndsLine());
    return [Buffer.from(marker, 'utf8'), ...tail];
  }

  /**
   * The end of `finalText()`, at most `maxBytes` UTF-8 bytes of it, starting at a character: what a
   * live page shows, read without making the whole log a string.
   */
  lastText(maxBytes: number): string {
    const parts = [this.head.subarray(0, this.headBytes), ...this.partsAfterHead()];
    const end: Buffer[] = [];
    let wanted = maxBytes;
    for (let index = parts.length - 1; index >= 0 && wanted > 0; index--) {
      const part = parts[index] ?? Buffer.alloc(0);
      end.unshift(part.subarray(Math.max(0, part.length - wanted)));
      wanted -= Math.min(wanted, part.length);
    }
    const bytes = Buffer.concat(end);
    return bytes.toString('utf8', characterStartAtOrAfter(bytes, 0));
  }

  /** The ring's bytes from where the tail starts: one view, or two where they wrap around. */
  private tailParts(): Buffer[] {
    const ring = this.ring;
    if (!ring || this.ringLength === 0) return [];
    const skip = this.tailSkipBytes();
    const start = (this.ringStart + skip) % ring.length;
    const length = this.ringLength - skip;
    const end = start + length;
    if (end <= ring.length) return [ring.subarray(start, end)];
    return [ring.subarray(start), ring.subarray(0, end - ring.length)];
  }

  /**
   * The whole log when it fits the limit; otherwise head + marker line + tail (the marker adds a
   * line of about a hundred bytes on top of the limit).
   */
  finalText(): string {
    return this.head.toString('utf8', 0, this.headBytes) + this.textAfterHead();
  }

  private lineSearchBytes(): number {
    return Math.min(MAX_LINE_SEARCH_BYTES, Math.floor(this.tailLimitBytes / 4));
  }

  private pushTail(bytes: Buffer): void {
    if (bytes.length === 0) return;
    const capacity = this.tailLimitBytes;
    this.ring ??= Buffer.alloc(capacity);
    if (bytes.length >= capacity) {
      const dropped = this.ringLength + bytes.length - capacity;
      if (dropped === 0) {
        // Nothing is lost: the ring was empty and the bytes fill it exactly.
      } else if (bytes.length > capacity) {
        this.lastOverwrittenByte = bytes[bytes.length - capacity - 1];
      } else {
        this.lastOverwrittenByte = this.ring[(this.ringStart + this.ringLength - 1) % capacity];
      }
      this.overwrittenBytes += dropped;
      bytes.copy(this.ring, 0, bytes.length - capacity);
      this.ringStart = 0;
      this.ringLength = capacity;
      return;
    }
    const overflow = this.ringLength + bytes.length - capacity;
    if (overflow > 0) {
      this.lastOverwrittenByte = this.ring[(this.ringStart + overflow - 1) % capacity];
      this.ringStart = (this.ringStart + overflow) % capacity;
      this.ringLength -= overflow;
      this.overwrittenBytes += overflow;
    }
    const writeAt = (this.ringStart + this.ringLength) % capacity;
    const firstPart = Math.min(bytes.length, capacity - writeAt);
    bytes.copy(this.ring, writeAt, 0, firstPart);
    bytes.copy(this.ring, 0, firstPart);
    this.ringLength += bytes.length;
  }

  /** The first `length` bytes of the ring (or all it holds), copied out when they wrap around. */
  private ringPrefix(length: number): Buffer {
    const ring = this.ring;
    if (!ring) return Buffer.alloc(0);
    const wanted = Math.min(length, this.ringLength);
    const end = this.ringStart + wanted;
    if (end <= ring.length) return ring.subarray(this.ringStart, end);
    return Buffer.concat([ring.subarray(this.ringStart), ring.subarray(0, end - ring.length)]);
  }

  /** Where the tail starts once its beginning was overwritten: after a nearby newline, or a whole character. */
  private tailSkipBytes(): number {
    if (this.overwrittenBytes === 0 || this.lastOverwrittenByte === NEWLINE) return 0;
    // Only the start matters: a character's first byte is within 3, the newline within lineSearchBytes.
    const bytes = this.ringPrefix(this.lineSearchBytes() + 4);
    const characterStart = characterStartAtOrAfter(bytes, 0);
    const newline = bytes.indexOf(NEWLINE, characterStart);
    if (newline !== -1 && newline - characterStart < this.lineSearchBytes()) return newline + 1;
    return characterStart;
  }
}

/** The line that replaces the dropped middle of a log. */
export function truncationMarker(truncatedBytes: number, limitBytes: number, atLineStart: boolean): string {
  return (
    `${atLineStart ? '' : '\n'}… ${formatBytes(truncatedBytes)} of log truncated here ` +
    `(limit ${formatBytes(limitBytes)}); the end of the log follows …\n`
  );
}

/** `512 bytes`, `1 KiB`, `12.3 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return bytes === 1 ? '1 byte' : `${bytes} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  // Compare the rounded value so that 1023.97 KiB is shown as 1 MiB, not 1024 KiB.
  while (Number(value.toFixed(1)) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1).replace(/\.0$/, '')} ${units[unit]}`;
}

function isContinuationByte(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

function characterStartAtOrBefore(bytes: Buffer, index: number): number {
  let at = index;
  while (at > 0 && isContinuationByte(bytes[at])) at--;
  return at;
}

function characterStartAtOrAfter(bytes: Buffer, index: number): number {
  let at = index;
  while (at < bytes.length && isContinuationByte(bytes[at])) at++;
  return at;
}
