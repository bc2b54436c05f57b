"""Small files for tests/scripts/test_bad_input.sh: IDX image sets (uint8, float32 with a NaN or out
of [0, 1], empty, with a wrong magic number), and a checkpoint rewritten with a bad metadata step or
a non-finite weight.

  bad_input_fixtures.py idx DIR              # writes DIR/*.idx
  bad_input_fixtures.py checkpoint IN OUT step|nan
"""
import json
import random
import struct
import sys


def write_idx(path, type_code, dims, values, fmt):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, type_code, len(dims)]))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(struct.pack(">%d%s" % (len(values), fmt), *values))


def idx(dirname):
    rng = random.Random(7)
    n, d = 64, 28 * 28
    pixels = [rng.randrange(256) for _ in range(n * d)]
    write_idx(f"{dirname}/good.idx", 0x08, [n, 28, 28], pixels, "B")
    write_idx(f"{dirname}/empty.idx", 0x08, [0, 28, 28], [], "B")
    floats = [p / 255.0 for p in pixels]
    nan = list(floats)
    nan[5 * d + 17] = float("nan")
    write_idx(f"{dirname}/nan.idx", 0x0D, [n, 28, 28], nan, "f")
    wide = list(floats)
    wide[3 * d + 2] = 7.5
    write_idx(f"{dirname}/wide.idx", 0x0D, [n, 28, 28], wide, "f")
    with open(f"{dirname}/good.idx", "rb") as f:
        data = bytearray(f.read())
    data[2] = 0x42  # no IDX type has this code
    with open(f"{dirname}/badmagic.idx", "wb") as f:
        f.write(data)


def checkpoint(src, dst, what):
    with open(src, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + hlen])
    body = bytearray(blob[8 + hlen :])
    if what == "step":
        header["__metadata__"]["step"] = "12abc"
    elif what == "nan":
        start = header["encoder.0.weight"]["data_offsets"][0]
        body[start : start + 4] = struct.pack("<f", float("inf"))
    else:
        raise SystemExit("unknown change " + what)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + bytes(body))


if __name__ == "__main__":
    if sys.argv[1] == "idx":
        idx(sys.argv[2])
    else:
        checkpoint(sys.argv[2], sys.argv[3], sys.argv[4])
