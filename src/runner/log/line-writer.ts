/**
 * The build log's line writer: the build's own output goes through as it comes, and Lambkin's lines
 * (step headers, warnings, the summary) always start on a line of their own.
 */
import type { LogStream } from './stream.js';

/** Keeps Lambkin's own lines at the start of a line, whatever the build printed before them. */
export class LineAwareWriter {
  private atLineStart = true;

  constructor(private readonly log: LogStream) {}

  output(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.log.write(chunk);
    this.atLineStart = chunk[chunk.length - 1] === 0x0a;
  }

  raw(text: string): void {
    if (!this.atLineStart) this.log.write('\n');
    this.log.write(text);
    this.atLineStart = text.endsWith('\n');
  }

  line(text: string): void {
    this.raw(text + '\n');
  }
}
