import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors, SafetensorsFile } from '../src/io/safetensors.js';
import { decodeTensor } from '../src/io/safetensors-format.js';
import { f16ToF32, f32ToF16, bf16ToF32, f32ToBf16 } from '../src/tensor/f16.js';

const dir = mkdtempSync(join(tmpdir(), 'aquakv-st-'));
const data = Float32Array.from({ length: 24 }, (_, i) => (i - 12) * 0.37);

function writeTemp(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

test('round trip in F32 is exact, F16 and BF16 round to their precision', () => {
  const bytes = encodeSafetensors([
    { name: 'a', shape: [4, 6], data, dtype: 'F32' },
    { name: 'b', shape: [24], data, dtype: 'F16' },
    { name: 'c', shape: [2, 12], data, dtype: 'BF16' },
  ], { format: 'pt' });
  const f = SafetensorsFile.open(writeTemp('ok.safetensors', bytes));
  assert.deepEqual(f.entries.get('a')!.shape, [4, 6]);
  assert.deepEqual(Array.from(f.readF32('a')), Array.from(data));
  const b = f.readF32('b');
  const c = f.readF32('c');
  for (let i = 0; i < data.length; i++) {
    assert.equal(b[i], f16ToF32(f32ToF16(data[i])));
    assert.equal(c[i], bf16ToF32(f32ToBf16(data[i])));
    assert.ok(Math.abs(b[i] - data[i]) <= Math.abs(data[i]) * 2 ** -11 + 1e-7);
    assert.ok(Math.abs(c[i] - data[i]) <= Math.abs(data[i]) * 2 ** -8 + 1e-7);
  }
  assert.equal(f.metadata.format, 'pt');
  f.close();
});

test('f16 conversion handles subnormals, infinities and rounding to even', () => {
  assert.equal(f32ToF16(65504), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00); // rounds up to infinity
  assert.equal(f16ToF32(0x0001), 2 ** -24);
  assert.equal(f32ToF16(2 ** -24), 0x0001);
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie → even
  assert.equal(f32ToF16(-2), 0xc000);
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(NaN))));
});

test('corrupt files are rejected with a reason naming the file', () => {
  const good = encodeSafetensors([{ name: 'a', shape: [4, 6], data, dtype: 'F32' }]);
  const cases: [string, Uint8Array, RegExp][] = [
    ['short', good.subarray(0, 5), /fewer than the 8-byte header/],
    ['truncated', good.subarray(0, good.length - 4), /truncated/],
  ];
  const hugeLen = Buffer.from(good);
  hugeLen.writeBigUInt64LE(1n << 40n, 0);
  cases.push(['hugelen', hugeLen, /header length/]);
  const badJson = Buffer.from(good);
  badJson[8] = 0x7b + 1; // '{' → '|'
  cases.push(['badjson', badJson, /not valid JSON/]);
  const header = (h: object, dataBytes = 96) => {
    const j = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(j.length));
    return Buffer.concat([len, j, Buffer.alloc(dataBytes)]);
  };
  cases.push(['span', header({ a: { dtype: 'F32', shape: [4, 6], data_offsets: [0, 90] } }), /needs 96 bytes/]);
  cases.push(['overlap', header({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }), /overlap/]);
  cases.push(['dtype', header({ a: { dtype: 'Q4', shape: [4], data_offsets: [0, 16] } }), /unknown dtype/]);
  cases.push(['offsets', header({ a: { dtype: 'F32', shape: [4], data_offsets: [16, 0] } }), /malformed data_offsets/]);
  cases.push(['hole', header({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [32, 48] } }, 48), /bytes 16–32 of the data section belong to no tensor \(before b\)/]);
  const dup = (() => {
    const j = Buffer.from('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(j.length));
    return Buffer.concat([len, j, Buffer.alloc(32)]);
  })();
  cases.push(['duplicate', dup, /tensor a is named twice/]);
  cases.push(['trailing', header({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 17), /1 bytes after the last tensor/]);
  // a header length one byte too long shifts the data: refused, never read shifted
  const shifted = Buffer.from(good);
  shifted.writeBigUInt64LE(shifted.readBigUInt64LE(0) - 1n, 0);
  cases.push(['shifted', shifted, /not a valid safetensors file/]);
  for (const [name, bytes, re] of cases) {
    const p = writeTemp(`${name}.safetensors`, bytes);
    assert.throws(() => SafetensorsFile.open(p), (e: Error) => re.test(e.message) && e.message.includes(p), name);
  }
  const i64 = header({ a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16);
  const f = SafetensorsFile.open(writeTemp('i64.safetensors', i64));
  assert.throws(() => f.readF32('a'), /only F32, F16 and BF16/);
  f.close();
  // a zero-size tensor at offset 0 beside a real one is valid
  const empty = header({ z: { dtype: 'F32', shape: [0], data_offsets: [0, 0] }, a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 16);
  const g = SafetensorsFile.open(writeTemp('empty.safetensors', empty));
  assert.deepEqual(Array.from(g.readF32('z')), []);
  g.close();
});

test('bulk conversion: every F16 pattern as f16ToF32 gives it, BF16 and F32 at any byte offset', () => {
  const all = new Uint8Array(65536 * 2 + 1); // one byte of offset: a misaligned tensor
  const dv = new DataView(all.buffer, 1);
  for (let h = 0; h < 65536; h++) dv.setUint16(h * 2, h, true);
  const f16 = decodeTensor(all.subarray(1), 'F16', 't');
  const bf16 = decodeTensor(all.subarray(1), 'BF16', 't');
  for (let h = 0; h < 65536; h++) {
    assert.ok(Object.is(f16[h], Math.fround(f16ToF32(h))) || (Number.isNaN(f16[h]) && Number.isNaN(f16ToF32(h))), `F16 ${h}`);
    assert.ok(Object.is(bf16[h], bf16ToF32(h)) || (Number.isNaN(bf16[h]) && Number.isNaN(bf16ToF32(h))), `BF16 ${h}`);
  }
  const f = Float32Array.of(1.5, -2.25, 3e-9, Infinity);
  const bytes = new Uint8Array(17);
  bytes.set(new Uint8Array(f.buffer), 1);
  assert.deepEqual(decodeTensor(bytes.subarray(1), 'F32', 't'), f);
});
