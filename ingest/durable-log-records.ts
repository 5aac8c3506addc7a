/**
 * The durable log's on-disk format and file primitives: a record is [u32 payload length][u32 CRC-32 of
 * payload][payload], payload = `family \t device \t line`. Encoding a point, checking a segment file (a torn
 * last record, from a power cut mid-write, is cut off with a warning), decoding records read back, and the
 * writev and fdatasync of the group commit. durable-log.ts keeps the segments and their state.
 */
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import type { Logger } from '../core/logger.ts';
import type { Family } from '../core/contract.ts';

export interface LogPoint {
  line: string;
  family: Family;
  device: string;
}

/** A point read back or appended, with its sequence number. */
export interface SeqPoint extends LogPoint {
  seq: number;
}

const HEADER = 8;
const MAX_RECORD = 1 << 20;

/** One buffer per record (header + payload), written in place: no intermediate payload buffer. */
export function encodeRecord(p: LogPoint): Buffer {
  const text = `${p.family}\t${p.device}\t${p.line}`;
  const len = Buffer.byteLength(text, 'utf8');
  const record = Buffer.allocUnsafe(HEADER + len);
  record.write(text, HEADER, 'utf8');
  record.writeUInt32LE(len, 0);
  record.writeUInt32LE(crc32(record.subarray(HEADER)), 4);
  return record;
}

/** Checks every record of a segment file: their offsets, the valid length, and whether a torn tail was cut off. */
export function scanSegmentFile(file: string, log: Logger): { offsets: number[]; bytes: number; torn: number } {
  const buf = fs.readFileSync(file);
  const offsets: number[] = [];
  let off = 0;
  let torn = 0;
  while (off < buf.length) {
    if (off + HEADER > buf.length) {
      torn = 1;
      break;
    }
    const len = buf.readUInt32LE(off);
    const crc = buf.readUInt32LE(off + 4);
    if (len > MAX_RECORD || off + HEADER + len > buf.length || crc32(buf.subarray(off + HEADER, off + HEADER + len)) !== crc) {
      torn = 1;
      break;
    }
    offsets.push(off);
    off += HEADER + len;
  }
  if (torn) {
    log.warn({ file, validBytes: off, fileBytes: buf.length }, 'durable log: torn record at the end of a segment, cut off');
    fs.truncateSync(file, off);
  }
  return { offsets, bytes: off, torn };
}

/** Decodes `n` consecutive records at the start of `buf` into `out`, the first with sequence number `seq`. */
export function decodeRecords(buf: Buffer, seq: number, n: number, out: SeqPoint[]): void {
  let off = 0;
  for (let i = 0; i < n; i++) {
    const len = buf.readUInt32LE(off);
    const text = buf.toString('utf8', off + HEADER, off + HEADER + len);
    off += HEADER + len;
    const t1 = text.indexOf('\t');
    const t2 = text.indexOf('\t', t1 + 1);
    out.push({ seq: seq + i, family: text.slice(0, t1) as Family, device: text.slice(t1 + 1, t2), line: text.slice(t2 + 1) });
  }
}

export function writev(fd: number, bufs: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    // writev takes at most IOV_MAX (1024) buffers per call on Linux; node splits larger lists itself.
    fs.writev(fd, bufs, (err, written) => {
      if (err) return reject(err);
      const total = bufs.reduce((n, b) => n + b.length, 0);
      if (written !== total) return reject(new Error(`short write: ${written} of ${total} bytes`));
      resolve();
    });
  });
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}
