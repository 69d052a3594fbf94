"""Write the committed fuzz corpus: fuzz/corpus/<target>/seed-* (valid inputs, must load)
and bad-* (malformed inputs, each must give an error, never a panic). The replay test
crates/leaky/tests/fuzz_corpus.rs runs every file through the target's body on stable.

Run from the repository root with numpy and safetensors installed: python fuzz/make_corpus.py
Input layout per target (see leaky::data::fuzz): npy and idx take a selector byte first
(even: the features/images file is the input, odd: the labels file), the other file valid.
"""
import gzip, io, os, struct, zipfile
import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "corpus")

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def npy_bytes(a, version=None):
    b = io.BytesIO()
    if version:
        np.lib.format.write_array(b, a, version=version)
    else:
        np.save(b, a)
    return b.getvalue()

def raw_npy(header, data=b"", version=1):
    h = header
    pre = 10 if version == 1 else 12
    while (pre + len(h) + 1) % 64:
        h += " "
    h += "\n"
    out = b"\x93NUMPY" + bytes([version, 0])
    out += struct.pack("<H" if version == 1 else "<I", len(h))
    return out + h.encode("latin1") + data

x = np.arange(24, dtype=np.float32).reshape(4, 2, 3) / 4
y = np.array([0, 2, 1, 2], dtype=np.int64)
X, Y = b"\x00", b"\x01"  # selectors

# --- npy
put("npy", "seed-x-f4", X + npy_bytes(x))
put("npy", "seed-x-f8-v2", X + npy_bytes(x.reshape(4, 6).astype(np.float64), (2, 0)))
put("npy", "seed-x-fortran-be", X + npy_bytes(np.asfortranarray(x.reshape(4, 6)).astype(">f4")))
put("npy", "seed-y-u1", Y + npy_bytes(y.astype(np.uint8)))
good = npy_bytes(x)
put("npy", "bad-empty", X)
put("npy", "bad-magic", X + b"hello world, not numpy")
put("npy", "bad-zip", X + b"PK\x03\x04rest")
put("npy", "bad-truncated-preamble", X + good[:8])
put("npy", "bad-truncated-header", X + good[:40])
put("npy", "bad-truncated-data", X + good[:-1])
put("npy", "bad-too-long", X + good + b"\x00")
put("npy", "bad-version", X + good[:6] + b"\x04" + good[7:])
put("npy", "bad-header-len-4g", X + b"\x93NUMPY\x02\x00\xff\xff\xff\xff{")
put("npy", "bad-huge-shape", X + raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000, 4000000000), }"))
put("npy", "bad-shape-over-limit", X + raw_npy("{'descr': '<u1', 'fortran_order': False, 'shape': (100000, 100000), }"))
put("npy", "bad-negative-shape", X + raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"))
put("npy", "bad-deep-nesting", X + raw_npy("{'descr': " + "(" * 5000 + ")" * 5000 + ", 'fortran_order': False, 'shape': (2, 3), }"))
put("npy", "bad-not-dict", X + raw_npy("['descr']"))
put("npy", "bad-structured", X + raw_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", b"\x00" * 8))
put("npy", "bad-f16", X + raw_npy("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 1), }", b"\x00" * 4))
put("npy", "bad-object", X + raw_npy("{'descr': '|O', 'fortran_order': False, 'shape': (2, 1), }", b"\x00" * 16))
put("npy", "bad-nan", X + npy_bytes(np.array([[1.0, np.nan], [2.0, 3.0], [0, 0], [0, 0]], dtype=np.float32)))
put("npy", "bad-f32-overflow", X + npy_bytes(np.array([[1e300], [0.0], [0.0], [0.0]])))
put("npy", "bad-1d-x", X + npy_bytes(np.arange(4, dtype=np.float32)))
put("npy", "bad-no-examples", X + npy_bytes(np.zeros((0, 3), dtype=np.float32)))
put("npy", "bad-y-float", Y + npy_bytes(y.astype(np.float64)))
put("npy", "bad-y-negative", Y + npy_bytes(np.array([0, -1, 1, 2], dtype=np.int16)))
put("npy", "bad-y-huge", Y + npy_bytes(np.array([0, 1 << 40, 1, 2], dtype=np.int64)))
put("npy", "bad-y-count", Y + npy_bytes(np.array([0, 1, 1], dtype=np.int64)))
put("npy", "bad-y-2d", Y + npy_bytes(np.zeros((2, 2), dtype=np.int64)))
put("npy", "bad-header-non-ascii", X + raw_npy("{'descr': '<f4\xe9', 'fortran_order': False, 'shape': (4, 6), }", b"\x00" * 96))

# --- npz
def npz(**arrays):
    b = io.BytesIO()
    np.savez_compressed(b, **arrays)
    return b.getvalue()
put("npz", "seed-xy", npz(x=x, y=y))
b = io.BytesIO(); np.savez(b, x.reshape(4, 6), y); put("npz", "seed-arr", b.getvalue())
put("npz", "bad-empty", b"")
put("npz", "bad-not-zip", good)
put("npz", "bad-names", npz(features=x, labels=y))
whole = npz(x=x, y=y)
put("npz", "bad-truncated", whole[: len(whole) // 2])
put("npz", "bad-x-not-npy", npz(x=np.frombuffer(b"hello", dtype=np.uint8), y=y).replace(b"\x93NUMPY", b"\x93NUMPX"))
# A member that inflates to 64 MiB of zeros after a valid-looking header claiming 4 bytes.
zb = io.BytesIO()
with zipfile.ZipFile(zb, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("x.npy", npy_bytes(x) + b"\x00" * (64 << 20))
    z.writestr("y.npy", npy_bytes(y))
put("npz", "bad-bomb", zb.getvalue())

# --- csv
put("csv", "seed-header-quoted", b'"a, b",c,label\r\n1,"2",0\r\n# comment\r\n3,4e1,1\r\n')
put("csv", "seed-gzip", gzip.compress(b"1,2,1\n3,4,0\n", mtime=0))
for name, text in [
    ("bad-empty", b""), ("bad-header-only", b"a,b,label\n"), ("bad-ragged", b"1,2,0\n1,2\n"),
    ("bad-not-number", b"1,abc,0\n"), ("bad-empty-cell", b"1,,0\n"), ("bad-nan", b"1,NaN,0\n"),
    ("bad-inf", b"-inf,2,0\n"), ("bad-overflow", b"1e39,2,0\n"), ("bad-label-negative", b"1,2,-1\n"),
    ("bad-label-fraction", b"1,2,1.5\n"), ("bad-label-huge", b"1,2,1e9\n"), ("bad-one-column", b"1\n2\n"),
    ("bad-semicolon", b"1;2;0\n"), ("bad-utf8", b"1,2,0\n1,\xff,1\n"), ("bad-unterminated-quote", b'1,"2,0\n'),
    ("bad-quoted-comma", b'1,2,0\n"1,5",2,1\n'), ("bad-gzip-truncated", gzip.compress(b"1,2,1\n" * 100, mtime=0)[:20]),
]:
    put("csv", name, text)
put("csv", "bad-gzip-bomb-utf8", gzip.compress(b"\xff" * (32 << 20), mtime=0))

# --- idx
def idx(ty, dims, data=b""):
    return bytes([0, 0, ty, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data
imgs = idx(8, [3, 1, 2], bytes(range(6)))
labs = idx(8, [3], bytes([0, 1, 2]))
put("idx", "seed-images", X + imgs)
put("idx", "seed-labels-gzip", Y + gzip.compress(labs, mtime=0))
put("idx", "bad-empty", X)
put("idx", "bad-magic", X + b"\x1a\x2b\x3c\x4d\0\0\0\0")
put("idx", "bad-swapped", X + labs)
put("idx", "bad-swapped-labels", Y + imgs)
put("idx", "bad-type-f32", X + idx(0x0D, [3, 1, 2], b"\x00" * 24))
put("idx", "bad-truncated-dims", X + imgs[:10])
put("idx", "bad-truncated-data", X + imgs[:-1])
put("idx", "bad-too-long", Y + labs + b"\x01")
put("idx", "bad-huge-dims", X + idx(8, [0xFFFFFFFF] * 3))
put("idx", "bad-over-limit", X + idx(8, [60000, 280, 280]))
put("idx", "bad-no-images", X + idx(8, [0, 28, 28]))
put("idx", "bad-count", Y + idx(8, [2], b"\x00\x01"))
put("idx", "bad-gzip-bomb-magic", X + gzip.compress(b"\x1f\x00\x00\x00" + b"\x00" * (64 << 20), mtime=0))
put("idx", "bad-gzip-bomb-long", Y + gzip.compress(labs + b"\x00" * (64 << 20), mtime=0))
put("idx", "bad-gzip-corrupt", X + gzip.compress(imgs, mtime=0)[:15])

# --- text
put("text", "seed-ascii", b"hello world, a small corpus\r\nwith two lines\n")
put("text", "bad-short", b"abc")
put("text", "bad-utf8", b"abc\xff\xfedef more text here")
put("text", "bad-vocab", "".join(chr(0x4E00 + i) for i in range(10001)).encode())
put("text", "bad-gzip-truncated", gzip.compress(b"hello world " * 50, mtime=0)[:30])

# --- checkpoint (a 4-3-2 MLP: 0.W (4, 3), 0.b (3,), 2.W (3, 2), 2.b (2,))
try:
    from safetensors.numpy import save
    names = None
except ImportError:
    save = None
if save is not None:
    rng = np.random.default_rng(0)
    good_t = {"layers.0.W": rng.standard_normal((4, 3)).astype(np.float32)}
    # Names are whatever leaky writes; the seed comes from leaky itself (see the test).
    put("checkpoint", "bad-empty", b"")
    put("checkpoint", "bad-junk", b"not a checkpoint")
    put("checkpoint", "bad-header-len-huge", struct.pack("<Q", 1 << 62) + b"{}")
    put("checkpoint", "bad-header-not-json", struct.pack("<Q", 5) + b"{abc}")
    put("checkpoint", "bad-wrong-names", save(good_t))
    put("checkpoint", "bad-offsets", struct.pack("<Q", 60) + b'{"a":{"dtype":"F32","shape":[4,3],"data_offsets":[0,4800]}}'[:60])

# --- experiment: every example experiment as a seed, and bad files whose first line
# `# expect: TEXT` names what the error must contain (the replay test checks it).
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
for sub in ["", "healthy", "sick", "demo"]:
    d = os.path.join(EXAMPLES, sub)
    for f in sorted(os.listdir(d)):
        if f.endswith(".toml"):
            with open(os.path.join(d, f), "rb") as fh:
                put("experiment", "seed-" + (sub + "-" if sub else "") + f[:-5], fh.read())
put("experiment", "seed-empty", b"")  # the string API: all defaults (an empty *file* is refused by `load`)
put("experiment", "seed-layers", b"""seed = 3
[data]
dataset = "idx:images.gz,labels.gz"
val_fraction = 0.25
[model]
init = "normal"
init_std = 0.05
[[model.layers]]
type = "conv"
filters = 2
size = 3
pad = 1
name = "c1"
[[model.layers]]
type = "batchnorm"
[[model.layers]]
type = "relu"
[[model.layers]]
type = "maxpool"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dropout"
p = 0.5
[[model.layers]]
type = "layernorm"
[[model.layers]]
type = "affine"
""")
# Once crashed the spectral-radius instrument: a Whh scaled to a denormal radius (valid:
# the body builds the model and measures the spectrum) or past f32's range (refused).
WHH = "[data]\ndataset = \"adding\"\n[model]\nkind = \"rnn\"\nhidden = [8]\nwhh_radius = {}\n[train]\nloss = \"mse\"\n"
put("experiment", "seed-whh-radius-tiny", WHH.format("1e-45").encode())
put("experiment", "seed-whh-radius-limit", WHH.format("1000.0").encode())
put("experiment", "bad-whh-radius-huge", ("# expect: model.whh_radius\n" + WHH.format("1e39")).encode())
BAD_EXPERIMENTS = [
    ("list-of-train", "[[train]]", "[[train]]\nlr = 0.1\n"),
    ("bias-init-huge", "model.bias_init", "[model]\nbias_init = 1e39\n"),
    ("init-std-nan", "init_std", "[model]\ninit = \"he\"\ninit_std = nan\n"),
    ("init-std-huge", "init_std", "[model]\ninit = \"normal\"\ninit_std = 1e300\n"),
    ("weight-decay-huge", "weight_decay", "[train]\nweight_decay = 1e308\n"),
    ("lr-zero", "train.lr", "[train]\nlr = 0.0\n"),
    ("lr-inf", "train.lr", "[train]\nlr = inf\n"),
    ("unknown-key", "learning_rate", "[train]\nlearning_rate = 0.1\n"),
    ("wrong-type", "epochs", "[train]\nepochs = \"ten\"\n"),
    ("hidden-huge", "model.hidden[1]", "[model]\nhidden = [100, 10000000000]\n"),
    ("dqn-hidden-huge", "model.hidden[1] = 100000", "[model]\nkind = \"dqn\"\nhidden = [100000, 100000]\n"),
    ("dqn-batch-huge", "batch_size", "[model]\nkind = \"dqn\"\n[train]\nbatch_size = 9223372036854775807\n"),
    ("dqn-buffer-huge", "buffer_size", "[model]\nkind = \"dqn\"\n[rl]\nbuffer_size = 9000000000000\n"),
    ("dqn-td-loss", "l1", "[model]\nkind = \"dqn\"\n[rl]\ntd_loss = \"l1\"\n"),
    ("lstm-init-std-huge", "init_std", "[data]\ndataset = \"adding\"\n[model]\nkind = \"lstm\"\nhidden = [8]\ninit = \"normal\"\ninit_std = 1e39\n[train]\nloss = \"mse\"\n"),
    ("rnn-hidden-huge", "model.hidden[0]", "[data]\ndataset = \"adding\"\n[model]\nkind = \"lstm\"\nhidden = [5000]\n[train]\nloss = \"mse\"\n"),
    ("rnn-two-hidden", "model.hidden", "[data]\ndataset = \"adding\"\n[model]\nkind = \"lstm\"\nhidden = [8, 8]\n[train]\nloss = \"mse\"\n"),
    ("rnn-wrong-loss", "train.loss", "[data]\ndataset = \"adding\"\n[model]\nkind = \"rnn\"\nhidden = [8]\n"),
    ("seq-len-zero", "seq_len", "[data]\ndataset = \"adding\"\nseq_len = 0\n[model]\nkind = \"rnn\"\nhidden = [8]\n[train]\nloss = \"mse\"\n"),
    ("seq-len-huge", "seq_len", "[data]\ndataset = \"copy\"\nseq_len = 100000\n[model]\nkind = \"rnn\"\nhidden = [8]\n"),
    ("text-no-path", "needs a path", "[data]\ndataset = \"text:\"\n[model]\nkind = \"rnn\"\nhidden = [8]\n"),
    ("mlp-on-sequences", "sequence", "[data]\ndataset = \"adding\"\n"),
    ("rnn-on-rows", "not sequence data", "[data]\ndataset = \"digits\"\n[model]\nkind = \"rnn\"\nhidden = [8]\n"),
    ("unknown-dataset", "mnist", "[data]\ndataset = \"mnist\"\n"),
    ("empty-dataset", "data.dataset", "[data]\ndataset = \"  \"\n"),
    ("spiral-zero", "spiral:0,3", "[data]\ndataset = \"spiral:0,3\"\n"),
    ("spiral-huge", "spiral:100000,100000", "[data]\ndataset = \"spiral:100000,100000\"\n"),
    ("csv-no-path", "needs a path", "[data]\ndataset = \"csv:\"\n"),
    ("npy-one-path", "two comma-separated paths", "[data]\ndataset = \"npy:x.npy\"\n"),
    ("val-fraction-one", "val_fraction", "[data]\nval_fraction = 1.0\n"),
    ("val-fraction-all", "data.val_fraction", "[data]\nval_fraction = 0.9999\n"),
    ("shape-mismatch", "data.shape", "[data]\nshape = [3, 3]\n"),
    ("seed-negative", "seed", "seed = -1\n"),
    ("not-toml", "line 3", "\nseed = = 3\n[[[\n"),
    ("not-utf8", "line 3", b"\n\xff\xfe = 1\n"),
    ("layers-not-a-list", "layers", "[model]\nlayers = 3\n"),
    ("conv-no-size", "size", "[[model.layers]]\ntype = \"conv\"\nfilters = 4\n[[model.layers]]\ntype = \"affine\"\n"),
    ("conv-on-rows", "layer 0 (conv", "[data]\ndataset = \"spiral\"\n[[model.layers]]\ntype = \"conv\"\nfilters = 2\nsize = 3\n[[model.layers]]\ntype = \"affine\"\n"),
    ("conv-too-big", "layer 0 (conv 9x9", "[[model.layers]]\ntype = \"conv\"\nfilters = 2\nsize = 9\n[[model.layers]]\ntype = \"affine\"\n"),
    ("last-affine-units", "10 units", "[[model.layers]]\ntype = \"affine\"\nunits = 5\n"),
    ("after-last-affine", "after the last affine", "[[model.layers]]\ntype = \"affine\"\n[[model.layers]]\ntype = \"relu\"\n"),
    ("layer-unknown-key", "units", "[[model.layers]]\ntype = \"relu\"\nunits = 3\n[[model.layers]]\ntype = \"affine\"\n"),
    ("clip-negative", "clip_grad_norm", "[train]\nclip_grad_norm = -1.0\n"),
    ("dropout-p-one", "p", "[[model.layers]]\ntype = \"dropout\"\np = 1.5\n[[model.layers]]\ntype = \"affine\"\n"),
]
for name, expect, text in BAD_EXPERIMENTS:
    body = text if isinstance(text, bytes) else text.encode()
    put("experiment", "bad-" + name, ("# expect: " + expect + "\n").encode() + body)
