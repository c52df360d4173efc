/**
 * A real headless browser for tests: Debian's `chromium` (installed by .ci/run) driven by
 * playwright-core. Never a downloaded browser: the executable is the system one or nothing.
 *
 * Also a small PNG reader, so a test can check the pixels of a screenshot without another dependency.
 */
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, inflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import type { BrowserContext } from 'playwright-core';
import { findOnPath } from './tools.js';

export const SYSTEM_CHROMIUM = '/usr/bin/chromium';

/**
 * The network is closed where tests run (and must not be needed): no QUIC, no background fetches,
 * no component or sync updates, no first-run UI.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The system Chromium: /usr/bin/chromium, else `chromium` on PATH; undefined when neither exists. */
export function findChromium(): string | undefined {
  try {
    accessSync(SYSTEM_CHROMIUM, constants.X_OK);
    return SYSTEM_CHROMIUM;
  } catch {
    return findOnPath('chromium');
  }
}

export interface LaunchedBrowser {
  /** One browser context on a fresh, empty profile. */
  context: BrowserContext;
  userDataDir: string;
  /** Closes the browser (its processes end with it) and deletes the profile. */
  close(): Promise<void>;
}

export interface LaunchOptions {
  viewport?: { width: number; height: number };
  colorScheme?: 'light' | 'dark';
}

export async function launchChromium(options: LaunchOptions = {}): Promise<LaunchedBrowser> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error(`chromium is not installed (${SYSTEM_CHROMIUM} is missing)`);
  const userDataDir = await mkdtemp(join(tmpdir(), 'lambkin-chromium-profile-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: options.viewport ?? { width: 1280, height: 800 },
      deviceScaleFactor: 1,
      colorScheme: options.colorScheme ?? 'light',
      locale: 'en-US',
      timezoneId: 'UTC',
      timeout: 30_000,
    });
  } catch (error) {
    await rm(userDataDir, { recursive: true, force: true });
    throw error;
  }
  let closed = false;
  return {
    context,
    userDataDir,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await context.close();
      } finally {
        await rm(userDataDir, { recursive: true, force: true });
      }
    },
  };
}

export interface DecodedPng {
  width: number;
  height: number;
  /** Bytes per pixel: 3 (RGB) or 4 (RGBA). */
  channels: 3 | 4;
  /** Unfiltered scanlines, `width * channels` bytes each. */
  pixels: Buffer;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes for screenshots),
 * checking the signature, every chunk's CRC, the chunk order and the image data's length.
 */
export function decodePng(png: Buffer): DecodedPng {
  if (png.length < PNG_SIGNATURE.length || !png.subarray(0, 8).equals(PNG_SIGNATURE)) {
    throw new Error('not a PNG: bad signature');
  }
  let offset = 8;
  let header: { width: number; height: number; channels: 3 | 4 } | undefined;
  const data: Buffer[] = [];
  let ended = false;
  while (offset < png.length) {
    if (offset + 12 > png.length) throw new Error('truncated PNG chunk');
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const end = offset + 12 + length;
    if (end > png.length) throw new Error(`truncated PNG chunk ${type}`);
    const body = png.subarray(offset + 8, offset + 8 + length);
    const crc = png.readUInt32BE(offset + 8 + length);
    if (crc32(png.subarray(offset + 4, offset + 8 + length)) !== crc) {
      throw new Error(`bad CRC in PNG chunk ${type}`);
    }
    if (!header && type !== 'IHDR') throw new Error('PNG does not start with IHDR');
    if (type === 'IHDR') {
      const [bitDepth, colourType, , , interlace] = body.subarray(8, 13);
      if (bitDepth !== 8 || (colourType !== 2 && colourType !== 6) || interlace !== 0) {
        throw new Error(
          `unsupported PNG: depth ${bitDepth}, colour type ${colourType}, interlace ${interlace}`,
        );
      }
      header = {
        width: body.readUInt32BE(0),
        height: body.readUInt32BE(4),
        channels: colourType === 6 ? 4 : 3,
      };
    } else if (type === 'IDAT') {
      data.push(body);
    } else if (type === 'IEND') {
      ended = true;
      offset = end;
      break;
    }
    offset = end;
  }
  if (!header || !ended || offset !== png.length) throw new Error('PNG is incomplete or has trailing data');
  const { width, height, channels } = header;
  const filtered = inflateSync(Buffer.concat(data));
  const stride = width * channels;
  if (filtered.length !== height * (stride + 1)) {
    throw new Error(`PNG image data has ${filtered.length} bytes, expected ${height * (stride + 1)}`);
  }
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = filtered[y * (stride + 1)]!;
    const line = filtered.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride;
    const up = (x: number): number => (y === 0 ? 0 : pixels[out - stride + x]!);
    const left = (x: number): number => (x < channels ? 0 : pixels[out + x - channels]!);
    const upLeft = (x: number): number =>
      y === 0 || x < channels ? 0 : pixels[out - stride + x - channels]!;
    for (let x = 0; x < stride; x++) {
      let predicted: number;
      switch (filter) {
        case 0:
          predicted = 0;
          break;
        case 1:
          predicted = left(x);
          break;
        case 2:
          predicted = up(x);
          break;
        case 3:
          predicted = (left(x) + up(x)) >> 1;
          break;
        case 4:
          predicted = paeth(left(x), up(x), upLeft(x));
          break;
        default:
          throw new Error(`bad PNG filter type ${filter} on line ${y}`);
      }
      pixels[out + x] = (line[x]! + predicted) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/** The [r, g, b] of a pixel (alpha ignored). */
export function pixelAt(png: DecodedPng, x: number, y: number): [number, number, number] {
  const px = Math.round(x);
  const py = Math.round(y);
  if (px < 0 || py < 0 || px >= png.width || py >= png.height) {
    throw new Error(`pixel ${px},${py} is outside the ${png.width}×${png.height} image`);
  }
  const at = (py * png.width + px) * png.channels;
  return [png.pixels[at]!, png.pixels[at + 1]!, png.pixels[at + 2]!];
}

/** `#rrggbb` → [r, g, b]. */
export function hexColour(hex: string): [number, number, number] {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!match) throw new Error(`not a #rrggbb colour: ${hex}`);
  return [parseInt(match[1]!, 16), parseInt(match[2]!, 16), parseInt(match[3]!, 16)];
}

/** `rgb(1, 2, 3)` or `rgba(1, 2, 3, 1)` (what getComputedStyle returns) → [r, g, b]. */
export function cssColour(css: string): [number, number, number] {
  const match = /^rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*[\d.]+)?\)$/.exec(css.trim());
  if (!match) throw new Error(`not an rgb() colour: ${css}`);
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}
