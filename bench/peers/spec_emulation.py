"""The QARep integer arithmetic of docs/model-format.md in numpy, layer by layer.

Used to compare activations, not just logits, with a peer running the exported QDQ graph: first this
emulation must reproduce libqarep's logits bit for bit (so its intermediate activations are the runtime's),
then its uint8 activations are compared with the peer's QuantizeLinear outputs.
"""
import numpy as np


def conv_accumulators(x, weight, stride, groups, pad_values):
    """Exact int32 accumulators of a 3x3, pad-1 conv. x: [N, H, W, C] uint8; weight: [O, C/g, 3, 3] int8."""
    n, h, w, c = x.shape
    o = weight.shape[0]
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    padded = np.empty((n, h + 2, w + 2, c), dtype=np.float64)
    padded[:] = np.asarray(pad_values, dtype=np.float64)[None, None, None, :]
    padded[:, 1:h + 1, 1:w + 1, :] = x
    cg, og = c // groups, o // groups
    out = np.empty((n, oh, ow, o), dtype=np.float64)
    for g in range(groups):
        taps = []
        for ky in range(3):
            for kx in range(3):
                taps.append(padded[:, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride,
                                   g * cg:(g + 1) * cg])
        patches = np.stack(taps, axis=3).reshape(n * oh * ow, 9 * cg)  # [pixels, tap-major then channel]
        wg = weight[g * og:(g + 1) * og].astype(np.float64)            # [og, cg, 3, 3]
        wg = wg.transpose(0, 2, 3, 1).reshape(og, 9 * cg)               # tap-major then channel
        out[..., g * og:(g + 1) * og] = (patches @ wg.T).reshape(n, oh, ow, og)
    return out.astype(np.int64)  # products and sums are integers below 2^53, so float64 was exact


def requantize(acc, bias, multiplier):
    t = (acc + bias).astype(np.float32)
    t = t * multiplier.astype(np.float32)
    t = np.minimum(np.maximum(t, np.float32(0)), np.float32(255))
    return np.rint(t).astype(np.uint8)  # np.rint rounds half to even


def conv_layer(tensor, header, i, x):
    """Layer i's uint8 output for its uint8 NHWC input x."""
    import json
    layer = json.loads(header["__metadata__"]["layers"])[i]
    in_scale = np.float64(tensor("input.scale")[0] if i == 0 else tensor("conv.%d.output_scale" % (i - 1))[0])
    w = tensor("conv.%d.weight" % i)
    bias = tensor("conv.%d.bias" % i).astype(np.int64)
    ws = tensor("conv.%d.weight_scale" % i).astype(np.float64)
    out_scale = np.float64(tensor("conv.%d.output_scale" % i)[0])
    if i == 0:
        zero_point = tensor("input.zero_point").astype(np.int64)
        cg, og = layer["in"] // layer["groups"], layer["out"] // layer["groups"]
        zp = np.stack([zero_point[(o // og) * cg:(o // og + 1) * cg] for o in range(layer["out"])])
        bias = bias - (w.astype(np.int64).sum(axis=(2, 3)) * zp).sum(axis=1)
        pad = zero_point
    else:
        pad = np.zeros(layer["in"], dtype=np.int64)
    multiplier = (in_scale * ws / out_scale).astype(np.float32)
    return requantize(conv_accumulators(x, w, layer["stride"], layer["groups"], pad), bias, multiplier)


def pool_and_fc(tensor, x):
    """The pooled uint8 vector and the float logits for the last conv's output x."""
    n, h, w, c = x.shape
    last_scale = np.float64(tensor("conv.%d.output_scale" % (num_layers(tensor) - 1))[0])
    pool_scale = np.float64(tensor("pool.output_scale")[0])
    pool_multiplier = np.float32(last_scale / (float(h * w) * pool_scale))
    sums = x.reshape(n, h * w, c).astype(np.int64).sum(axis=1)
    t = np.minimum(np.maximum(sums.astype(np.float32) * pool_multiplier, np.float32(0)), np.float32(255))
    pooled = np.rint(t).astype(np.uint8)
    fc_w = tensor("fc.weight").astype(np.int64)
    fc_b = tensor("fc.bias").astype(np.int64)
    fc_m = (pool_scale * tensor("fc.weight_scale").astype(np.float64)).astype(np.float32)
    acc = pooled.astype(np.int64) @ fc_w.T + fc_b[None, :]
    return pooled, acc.astype(np.float32) * fc_m[None, :]


def num_layers(tensor):
    i = 0
    while True:
        try:
            tensor("conv.%d.weight" % i)
        except KeyError:
            return i
        i += 1


def emulate(tensor, header, images):
    """Per-layer uint8 activations, the pooled vector and the logits for uint8 NHWC images."""
    x = images
    activations = []
    for i in range(num_layers(tensor)):
        x = conv_layer(tensor, header, i, x)
        activations.append(x)
    pooled, logits = pool_and_fc(tensor, x)
    return activations, pooled, logits
