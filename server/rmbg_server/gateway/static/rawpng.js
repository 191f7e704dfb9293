// rmbg playground: an 8-bit RGBA PNG decoded to its stored, unpremultiplied samples.
// A browser's own decoder premultiplies alpha in every canvas and filter, which erases the colour of
// fully transparent pixels; the playground needs exactly those (see beforeFor in playground.js).
// Plain browser JavaScript: DecompressionStream inflates the zlib stream, the rest is the PNG spec's
// chunk layout and its five scanline filters. Accepts what the server writes: non-interlaced RGBA.
"use strict";

async function decodeRawPng(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((b, i) => bytes[i] === b)) throw new Error("not a PNG");
  let width = 0, height = 0;
  const idat = [];
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      const [depth, colourType, , , interlace] = data.subarray(8, 13);
      if (depth !== 8 || colourType !== 6 || interlace !== 0) {
        throw new Error(`PNG depth ${depth}, colour type ${colourType}, interlace ${interlace}: only 8-bit RGBA`);
      }
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      break;
    }
    at += 12 + length;
  }
  const inflated = new Uint8Array(await new Response(
    new Blob(idat).stream().pipeThrough(new DecompressionStream("deflate"))).arrayBuffer());
  const stride = width * 4;
  if (inflated.length !== height * (stride + 1)) throw new Error("PNG data does not match its header");
  const out = new Uint8ClampedArray(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = inflated[y * (stride + 1)];
    const row = inflated.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const o = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= 4 ? out[o + x - 4] : 0;
      const b = y > 0 ? out[o + x - stride] : 0;
      const c = x >= 4 && y > 0 ? out[o + x - stride - 4] : 0;
      let predicted = 0;
      if (filter === 1) predicted = a;
      else if (filter === 2) predicted = b;
      else if (filter === 3) predicted = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`PNG filter ${filter} is not one of 0..4`);
      out[o + x] = (row[x] + predicted) & 0xff;
    }
  }
  return { width, height, data: out };
}
