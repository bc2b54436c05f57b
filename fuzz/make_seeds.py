"""Writes the fuzzers' seed corpora (fuzz/corpus/<reader>/): small valid files of each format.
Run once (python3 fuzz/make_seeds.py); the outputs are committed. The JPEG seeds are encoded by
libjpeg through jpeg_seeds.c."""
import json
import os
import shutil
import struct
import zlib

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "corpus")


def put(reader, name, data):
    d = os.path.join(corpus, reader)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(type_code, dims, payload):
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def png(width, height, channels, pixels):
    colour = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\0" + pixels[y * width * channels:(y + 1) * width * channels] for y in range(height))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def safetensors(tensors, meta):
    header, body = {"__metadata__": meta}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def npy(descr, shape, data):
    text = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join("%d, " % s for s in shape))
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + data


grey = bytes((7 * i) % 256 for i in range(4 * 5))
put("idx", "u8_images", idx(0x08, [2, 2, 5], grey))
put("idx", "u8_labels", idx(0x08, [3], bytes([1, 0, 9])))
put("idx", "f32_images", idx(0x0D, [1, 2, 2], struct.pack(">4f", 0.0, 0.25, 0.5, 1.0)))
put("idx", "gz_images", zlib.compress(idx(0x08, [1, 2, 2], bytes(4)), wbits=31))
put("cifar", "one_record", bytes([3]) + bytes((i * 13) % 256 for i in range(3072)))
put("cifar", "two_records", (bytes([0]) + bytes(3072)) * 2)
f32 = struct.pack("<6f", 0.5, -1.0, 2.0, 0.0, 1e-3, 7.0)
put("safetensors", "two_tensors", safetensors({"w": ("F32", [2, 3], f32), "b": ("F32", [1], f32[:4])}, {"format": "pt"}))
put("safetensors", "empty_tensor", safetensors({"e": ("F32", [0, 4], b"")}, {}))
put("npy", "f32_2d", npy("<f4", [2, 3], f32))
put("npy", "f32_scalar", npy("<f4", [], f32[:4]))
put("npy", "i32_1d", npy("<i4", [2], struct.pack("<2i", 4, -5)))


def cuaez(k, bits, n, h, w, c, codec, symbols):
    packed, acc, nbits = bytearray(), 0, 0
    for v in symbols:
        acc, nbits = (acc << bits) | v, nbits + bits
        while nbits >= 8:
            packed.append((acc >> (nbits - 8)) & 0xFF)
            nbits -= 8
    if nbits:
        packed.append((acc << (8 - nbits)) & 0xFF)
    payload = zlib.compress(bytes(packed)) if codec else bytes(packed)
    head = b"CUAECODE" + struct.pack("<IQIIQIIII", 1, 0x1234, k, bits, n, h, w, c, codec)
    body = head + struct.pack("<%df" % (2 * k), *([-1.0] * k + [1.0] * k)) + struct.pack("<Q", len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


put("cuaez", "raw_3x5", cuaez(5, 3, 3, 2, 2, 1, 0, [(i * 5) % 8 for i in range(15)]))
put("cuaez", "zlib_2x4", cuaez(4, 12, 2, 4, 4, 3, 1, [(i * 977) % 4096 for i in range(8)]))
for name in sorted(os.listdir(os.path.join(here, "..", "configs"))):
    if name.endswith(".toml"):
        shutil.copy(os.path.join(here, "..", "configs", name), os.path.join(corpus, "config", name))
# The image fuzzers read one spec byte, then the file.
rgb = bytes((3 * i) % 256 for i in range(6 * 4 * 3))
put("png", "grey_5x4", b"\x00" + png(5, 4, 1, grey))
put("png", "rgb_6x4", b"\x03" + png(6, 4, 3, rgb))
put("png", "rgba_2x2", b"\x01" + png(2, 2, 4, bytes(range(16))))
# JPEG seeds through libjpeg (Debian: libjpeg-dev), by a small C program.
import subprocess
import tempfile
with tempfile.TemporaryDirectory() as tmp:
    exe = os.path.join(tmp, "jpeg_seeds")
    subprocess.run(["cc", os.path.join(here, "jpeg_seeds.c"), "-ljpeg", "-o", exe], check=True)
    os.makedirs(os.path.join(corpus, "jpeg"), exist_ok=True)
    subprocess.run([exe, os.path.join(corpus, "jpeg")], check=True)
