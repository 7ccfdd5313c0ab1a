#!/usr/bin/env python3
# Writes the checked-in seed corpora of the .pth and safetensors fuzz targets (Tests/Fuzz/seeds/pth,
# seeds/safetensors) with the Python standard library only: torch.save's zip layout and pickle opcodes
# (persistent storage ids, _rebuild_tensor_v2, OrderedDict) without torch. Run it again only to change seeds;
# the files it writes are committed, so the fuzzers never depend on it.
import collections, io, json, os, pickle, struct, sys, types, zipfile

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "seeds")

# Stand-ins whose pickled names are torch's: pickle stores classes and functions by module and name.
torch = types.ModuleType("torch"); utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch; sys.modules["torch._utils"] = utils
def _rebuild_tensor_v2(*args): pass
def _rebuild_parameter(*args): pass
_rebuild_tensor_v2.__module__ = "torch._utils"; _rebuild_parameter.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2; utils._rebuild_parameter = _rebuild_parameter
STORAGES = {"f": "FloatStorage", "e": "HalfStorage", "d": "DoubleStorage", "q": "LongStorage", "b": "CharStorage"}
for name in STORAGES.values():
    cls = type(name, (), {}); cls.__module__ = "torch"; setattr(torch, name, cls)

class Storage:
    def __init__(self, key, code, values): self.key, self.code, self.values = key, code, values
class Tensor:
    def __init__(self, storage, offset, shape, stride, parameter=False):
        self.storage, self.offset, self.shape, self.stride, self.parameter = storage, offset, shape, stride, parameter
    def __reduce__(self):
        tensor = (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False,
                                       collections.OrderedDict()))
        if not self.parameter: return tensor
        return (_rebuild_parameter, (Rebuilt(tensor), True, collections.OrderedDict()))
class Rebuilt:
    def __init__(self, reduced): self.reduced = reduced
    def __reduce__(self): return self.reduced

class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, STORAGES[obj.code]), obj.key, "cpu", len(obj.values))
        return None

def contiguous(shape):
    stride, s = [], 1
    for n in reversed(shape): stride.insert(0, s); s *= n
    return stride

def pth(path, tensors, wrap=None, protocol=2, root="archive"):
    storages, state = [], collections.OrderedDict()
    for i, (name, code, shape, values, *view) in enumerate(tensors):
        st = Storage(str(i), code, values); storages.append(st)
        offset, stride = (view[0], view[1]) if view else (0, contiguous(shape))
        state[name] = Tensor(st, offset, shape, stride, parameter=(i % 2 == 1))
    obj = state if wrap is None else {wrap: state, "epoch": 3}
    buffer = io.BytesIO(); TorchPickler(buffer, protocol=protocol).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(root + "/data.pkl", buffer.getvalue())
        z.writestr(root + "/byteorder", "little")
        for st in storages:
            z.writestr(root + "/data/" + st.key, struct.pack("<%d%s" % (len(st.values), st.code), *st.values))
        z.writestr(root + "/version", "3\n")

def safetensors(path, tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, code, values in tensors:
        blob = struct.pack("<%d%s" % (len(values), code), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    if metadata: header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f: f.write(struct.pack("<Q", len(text)) + text + data)

os.makedirs(os.path.join(out, "pth"), exist_ok=True); os.makedirs(os.path.join(out, "safetensors"), exist_ok=True)
conv = [0.5 * ((i * 7) % 11 - 5) for i in range(4 * 3 * 9)]
bn = [1.0, 0.5, -0.25, 2.0]
pth(os.path.join(out, "pth", "conv-bn.pth"), [
    ("stage0.rbr_dense.conv.weight", "f", [4, 3, 3, 3], conv),
    ("stage0.rbr_dense.bn.weight", "f", [4], bn), ("stage0.rbr_dense.bn.bias", "f", [4], bn[::-1]),
    ("stage0.rbr_dense.bn.running_mean", "f", [4], [0.0] * 4), ("stage0.rbr_dense.bn.running_var", "f", [4], [1.0] * 4),
    ("stage0.rbr_dense.bn.num_batches_tracked", "q", [], [7]),
])
pth(os.path.join(out, "pth", "wrapped-half.pth"), [
    ("module.linear.weight", "e", [2, 4], [0.125 * i for i in range(8)]),
    ("module.linear.bias", "d", [2], [1.5, -2.0]),
], wrap="state_dict", protocol=4, root="ckpt")
# A strided view (a transpose) into a larger storage, and an int8 tensor.
pth(os.path.join(out, "pth", "strided-view.pth"), [
    ("linear.weight", "f", [3, 2], [float(i) for i in range(8)], 1, [1, 3]),
    ("codes", "b", [5], [-128, -1, 0, 1, 127]),
], wrap="model")
safetensors(os.path.join(out, "safetensors", "conv-bn.safetensors"), [
    ("stage0.rbr_dense.conv.weight", "F32", [4, 3, 3, 3], "f", conv),
    ("stage0.rbr_dense.bn.weight", "F32", [4], "f", bn),
    ("stage0.rbr_dense.bn.num_batches_tracked", "I64", [], "q", [7]),
], metadata={"format": "pt"})
safetensors(os.path.join(out, "safetensors", "mixed-dtypes.safetensors"), [
    ("a", "F16", [2, 2], "e", [0.5, -1.0, 2.0, 65504.0]),
    ("b", "BF16", [2], "H", [0x3f80, 0xc000]),
    ("c", "I8", [3], "b", [-128, 0, 127]), ("d", "U8", [1], "B", [255]), ("e", "I32", [2], "i", [-5, 9]),
    ("f", "F64", [1], "d", [3.25]), ("g", "BOOL", [2], "B", [0, 1]), ("empty", "F32", [0, 3], "f", []),
])

# Image seeds: small files in every format and variant the decoder has a branch for. Needs Pillow (any
# venv with it: /tmp/peers-venv/bin/python Tests/Fuzz/make-seeds.py); without it the image seeds stay as they are.
try:
    from PIL import Image
except ImportError:
    sys.exit(0)
images = os.path.join(out, "image"); os.makedirs(images, exist_ok=True)
rgb = Image.new("RGB", (37, 23))
rgb.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(23) for x in range(37)])
rgb.save(os.path.join(images, "baseline.jpg"), quality=80)
rgb.save(os.path.join(images, "progressive.jpg"), quality=60, progressive=True)
rgb.resize((160, 96)).save(os.path.join(images, "scalable-420.jpg"), quality=70, subsampling=2)
rgb.convert("L").save(os.path.join(images, "gray.jpg"))
rgb.convert("CMYK").save(os.path.join(images, "cmyk.jpg"))
rgb.save(os.path.join(images, "rgb.png"))
rgb.save(os.path.join(images, "interlaced.png"), interlace=1)
rgb.convert("P", palette=Image.ADAPTIVE, colors=16).save(os.path.join(images, "palette.png"))
rgb.convert("LA").save(os.path.join(images, "gray-alpha.png"))
rgb.convert("RGBA").save(os.path.join(images, "rgba.png"))
rgb.convert("I;16").save(os.path.join(images, "gray16.png"))
rgb.convert("1").save(os.path.join(images, "bilevel.png"))
rgb.save(os.path.join(images, "lossy.webp"), quality=50)
rgb.convert("RGBA").save(os.path.join(images, "lossless-alpha.webp"), lossless=True)
