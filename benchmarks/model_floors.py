"""Hand-written numpy training steps for ``models.py``: forward and backward written out by hand, the same
array kernels owngrad's rules call (``owngrad.kernels``: pure array functions, no graph), SGD with
gradient-norm clipping in place. They bound what any framework on numpy can reach.

Each ``*_floor(params, sizes, lr, clip, dropout=True)`` takes the model's parameters by owngrad's names
and returns ``step(x, y, train) -> loss``: with ``train`` False it only computes the loss (dropout off);
with ``train`` True it also updates the parameters (dropout on unless the floor was made with
``dropout=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from owngrad import kernels

Step = Callable[[np.ndarray, np.ndarray, bool], float]


def _dropout(rng: np.random.Generator, shape: tuple[int, ...], p: float, on: bool) -> np.ndarray | float:
    if not on:
        return 1.0
    return ((rng.random(shape) >= p) / (1.0 - p)).astype(np.float32)


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.log(s[:, 0]).mean() - shifted[np.arange(n), y].mean())
    d = e / s
    d[np.arange(n), y] -= 1
    d /= n
    return loss, d


def _sgd(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float, clip: float) -> None:
    norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
    scale = lr * min(1.0, clip / (norm + 1e-6))
    for k, g in grads.items():
        params[k] -= (scale * g).astype(params[k].dtype)


def cnn_floor(params: dict[str, np.ndarray], s: Any, lr: float, clip: float, dropout: bool = True) -> Step:
    p = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(0)

    def step(x: np.ndarray, y: np.ndarray, train: bool) -> float:
        on = train and dropout
        a1 = kernels.add_bias(kernels.conv2d_forward(x, p["conv1.weight"]), p["conv1.bias"][:, None, None])
        r1 = np.maximum(a1, 0)
        a2 = kernels.add_bias(kernels.conv2d_forward(r1, p["conv2.weight"]), p["conv2.bias"][:, None, None])
        pooled, arg = kernels.max_pool2d_forward(np.maximum(a2, 0), (2, 2), (2, 2))
        m1 = _dropout(rng, pooled.shape, 0.25, on)
        flat = (pooled * m1).reshape(x.shape[0], -1)
        h = flat @ p["fc1.weight"].T + p["fc1.bias"]
        m2 = _dropout(rng, h.shape, 0.5, on)
        hd = np.maximum(h, 0) * m2
        loss, d = _cross_entropy(hd @ p["fc2.weight"].T + p["fc2.bias"], y)
        if not train:
            return loss
        g = {"fc2.weight": d.T @ hd, "fc2.bias": d.sum(axis=0)}
        dh = (d @ p["fc2.weight"]) * m2 * (h > 0)
        g["fc1.weight"], g["fc1.bias"] = dh.T @ flat, dh.sum(axis=0)
        dpool = (dh @ p["fc1.weight"]).reshape(pooled.shape) * m1
        da2 = kernels.max_pool2d_grad(dpool, arg, a2.shape, (2, 2), (2, 2)) * (a2 > 0)
        g["conv2.weight"] = kernels.conv2d_grad_weight(da2, r1, p["conv2.weight"].shape)
        g["conv2.bias"] = da2.sum(axis=(0, 2, 3))
        da1 = kernels.conv2d_grad_input(da2, p["conv2.weight"], r1.shape) * (a1 > 0)
        g["conv1.weight"] = kernels.conv2d_grad_weight(da1, x, p["conv1.weight"].shape)
        g["conv1.bias"] = da1.sum(axis=(0, 2, 3))
        _sgd(p, g, lr, clip)
        return loss

    return step


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1)


def _lstm_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """One layer over (T, B, I): the input projection of the whole sequence in one GEMM, then one GEMM of
    all four gates per step. Returns the outputs (T, B, H) and what the backward needs."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    proj = kernels.matmul(x, w_ih.T) + b
    h, c = np.zeros((B, H), x.dtype), np.zeros((B, H), x.dtype)
    out = np.empty((T, B, H), x.dtype)
    tape = []
    for t in range(T):
        gates = proj[t] + h @ w_hh.T
        i, f, o = _sigmoid(gates[:, :H]), _sigmoid(gates[:, H:2 * H]), _sigmoid(gates[:, 3 * H:])
        gg = np.tanh(gates[:, 2 * H:3 * H])
        c_prev, c = c, f * c + i * gg
        tc = np.tanh(c)
        tape.append((i, f, gg, o, c_prev, tc))
        h = out[t] = o * tc
    return out, tape


def _lstm_backward(dout: np.ndarray, x: np.ndarray, out: np.ndarray, tape: list[Any], w_ih: np.ndarray,
                   w_hh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the input, ``w_ih``, ``w_hh`` and the (shared) bias: per step only the elementwise
    gate calculus and one GEMM; the weight gradients are one GEMM each over the whole sequence."""
    T, B, H = dout.shape
    dgates = np.empty((T, B, 4 * H), dout.dtype)
    dh_next, dc_next = np.zeros((B, H), dout.dtype), np.zeros((B, H), dout.dtype)
    for t in range(T - 1, -1, -1):
        i, f, gg, o, c_prev, tc = tape[t]
        dh = dout[t] + dh_next
        dc = dh * o * (1 - tc * tc) + dc_next
        dg = dgates[t]
        dg[:, :H] = dc * gg * i * (1 - i)
        dg[:, H:2 * H] = dc * c_prev * f * (1 - f)
        dg[:, 2 * H:3 * H] = dc * i * (1 - gg * gg)
        dg[:, 3 * H:] = dh * tc * o * (1 - o)
        dc_next = dc * f
        dh_next = dg @ w_hh
    h_prev = np.concatenate([np.zeros((1, B, H), out.dtype), out[:-1]])
    d2 = dgates.reshape(T * B, 4 * H)
    return (kernels.matmul(dgates, w_ih), d2.T @ x.reshape(T * B, -1), d2.T @ h_prev.reshape(T * B, H),
            d2.sum(axis=0))


def lstm_floor(params: dict[str, np.ndarray], s: Any, lr: float, clip: float, dropout: bool = True) -> Step:
    p = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(0)

    def step(src: np.ndarray, y: np.ndarray, train: bool) -> float:
        on = train and dropout
        emb = p["encoder.weight"][src]
        m0 = _dropout(rng, emb.shape, 0.2, on)
        x0 = emb * m0
        layers = []
        x = x0
        for k in ("rnn0", "rnn1"):
            b = p[f"{k}.bias_ih_l0"] + p[f"{k}.bias_hh_l0"]
            out, tape = _lstm_forward(x, p[f"{k}.weight_ih_l0"], p[f"{k}.weight_hh_l0"], b)
            m = _dropout(rng, out.shape, 0.2, on)
            layers.append((k, x, out, tape, m))
            x = out * m
        flat = x.reshape(-1, x.shape[-1])
        loss, d = _cross_entropy(flat @ p["decoder.weight"].T + p["decoder.bias"], y)
        if not train:
            return loss
        g = {"decoder.weight": d.T @ flat, "decoder.bias": d.sum(axis=0)}
        dx = (d @ p["decoder.weight"]).reshape(x.shape)
        for k, xin, out, tape, m in reversed(layers):
            dx, g[f"{k}.weight_ih_l0"], g[f"{k}.weight_hh_l0"], db = _lstm_backward(
                dx * m, xin, out, tape, p[f"{k}.weight_ih_l0"], p[f"{k}.weight_hh_l0"])
            g[f"{k}.bias_ih_l0"] = g[f"{k}.bias_hh_l0"] = db
        gw = np.zeros_like(p["encoder.weight"])
        np.add.at(gw, src.reshape(-1), (dx * m0).reshape(-1, gw.shape[1]))
        g["encoder.weight"] = gw
        _sgd(p, g, lr, clip)
        return loss

    return step


def _encoder_layer(x: np.ndarray, p: dict[str, np.ndarray], pre: str, heads: int, mask: np.ndarray,
                   drop: Callable[[tuple[int, ...]], np.ndarray | float]) -> tuple[np.ndarray, dict[str, Any]]:
    """``torch.nn.TransformerEncoderLayer`` (post-norm, ReLU) on (L, B, E) rows flattened to (L*B, E)."""
    L, B, E = x.shape
    dh = E // heads
    xf = x.reshape(L * B, E)
    qkv = xf @ p[pre + "self_attn.in_proj_weight"].T + p[pre + "self_attn.in_proj_bias"]
    q, k, v = (qkv[:, i * E:(i + 1) * E].reshape(L, B, heads, dh).transpose(1, 2, 0, 3) for i in range(3))
    scale = 1.0 / float(np.sqrt(dh))  # a Python float: an np.float64 would promote the scores to float64
    probs = kernels.softmax(np.where(mask, -np.inf, (q @ k.transpose(0, 1, 3, 2)) * scale), -1)
    m_att = drop(probs.shape)
    dropped = probs * m_att
    att = (dropped @ v).transpose(2, 0, 1, 3).reshape(L * B, E)
    o = att @ p[pre + "self_attn.out_proj.weight"].T + p[pre + "self_attn.out_proj.bias"]
    m1 = drop(o.shape)
    r1 = xf + o * m1
    y1, st1 = kernels.layer_norm(r1, p[pre + "norm1.weight"], p[pre + "norm1.bias"], 1, 1e-5)
    h1 = y1 @ p[pre + "linear1.weight"].T + p[pre + "linear1.bias"]
    m = drop(h1.shape)
    hd = np.maximum(h1, 0) * m
    m2 = drop(y1.shape)
    r2 = y1 + (hd @ p[pre + "linear2.weight"].T + p[pre + "linear2.bias"]) * m2
    y2, st2 = kernels.layer_norm(r2, p[pre + "norm2.weight"], p[pre + "norm2.bias"], 1, 1e-5)
    tape = {"xf": xf, "q": q, "k": k, "v": v, "probs": probs, "m_att": m_att, "dropped": dropped, "att": att,
            "m1": m1, "r1": r1, "st1": st1, "y1": y1, "h1": h1, "m": m, "hd": hd, "m2": m2, "r2": r2, "st2": st2,
            "scale": scale}
    return y2.reshape(L, B, E), tape


def _encoder_layer_backward(dy: np.ndarray, p: dict[str, np.ndarray], pre: str, t: dict[str, Any],
                            g: dict[str, np.ndarray]) -> np.ndarray:
    L, B, E = dy.shape
    dy = dy.reshape(L * B, E)
    dr2 = kernels.layer_norm_grad_input(dy, t["r2"], p[pre + "norm2.weight"], t["st2"], 1)
    g[pre + "norm2.weight"] = kernels.layer_norm_grad_weight(dy, t["r2"], t["st2"], 1)
    g[pre + "norm2.bias"] = dy.sum(axis=0)
    df = dr2 * t["m2"]
    g[pre + "linear2.weight"], g[pre + "linear2.bias"] = df.T @ t["hd"], df.sum(axis=0)
    dh1 = (df @ p[pre + "linear2.weight"]) * t["m"] * (t["h1"] > 0)
    g[pre + "linear1.weight"], g[pre + "linear1.bias"] = dh1.T @ t["y1"], dh1.sum(axis=0)
    dy1 = dr2 + dh1 @ p[pre + "linear1.weight"]
    dr1 = kernels.layer_norm_grad_input(dy1, t["r1"], p[pre + "norm1.weight"], t["st1"], 1)
    g[pre + "norm1.weight"] = kernels.layer_norm_grad_weight(dy1, t["r1"], t["st1"], 1)
    g[pre + "norm1.bias"] = dy1.sum(axis=0)
    do = dr1 * t["m1"]
    g[pre + "self_attn.out_proj.weight"], g[pre + "self_attn.out_proj.bias"] = do.T @ t["att"], do.sum(axis=0)
    heads = t["q"].shape[1]
    da = (do @ p[pre + "self_attn.out_proj.weight"]).reshape(L, B, heads, E // heads).transpose(1, 2, 0, 3)
    dv = t["dropped"].transpose(0, 1, 3, 2) @ da
    ds = kernels.softmax_grad((da @ t["v"].transpose(0, 1, 3, 2)) * t["m_att"], t["probs"], -1) * t["scale"]
    dq, dk = ds @ t["k"], ds.transpose(0, 1, 3, 2) @ t["q"]
    dqkv = np.concatenate([d.transpose(2, 0, 1, 3).reshape(L * B, E) for d in (dq, dk, dv)], axis=1)
    g[pre + "self_attn.in_proj_weight"], g[pre + "self_attn.in_proj_bias"] = dqkv.T @ t["xf"], dqkv.sum(axis=0)
    return (dr1 + dqkv @ p[pre + "self_attn.in_proj_weight"]).reshape(L, B, E)


def transformer_floor(params: dict[str, np.ndarray], s: Any, lr: float, clip: float, dropout: bool = True) -> Step:
    p = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(0)
    pos = np.arange(s.seq, dtype=np.float64)[:, None] * np.exp(np.arange(0, s.d, 2) * (-np.log(10000.0) / s.d))
    pe = np.zeros((s.seq, 1, s.d))
    pe[:, 0, 0::2], pe[:, 0, 1::2] = np.sin(pos), np.cos(pos)
    pe = pe.astype(np.float32)
    mask = np.triu(np.ones((s.seq, s.seq), dtype=bool), 1)
    root = np.float32(np.sqrt(s.d))

    def step(src: np.ndarray, y: np.ndarray, train: bool) -> float:
        on = train and dropout

        def drop(shape: tuple[int, ...]) -> np.ndarray | float:
            return _dropout(rng, shape, 0.2, on)

        m0 = drop((s.seq, s.batch, s.d))
        x = (p["encoder.weight"][src] * root + pe) * m0
        tapes = []
        for pre in ("layer0.", "layer1."):
            x, tape = _encoder_layer(x, p, pre, s.heads, mask, drop)
            tapes.append((pre, tape))
        flat = x.reshape(-1, s.d)
        loss, d = _cross_entropy(flat @ p["decoder.weight"].T + p["decoder.bias"], y)
        if not train:
            return loss
        g = {"decoder.weight": d.T @ flat, "decoder.bias": d.sum(axis=0)}
        dx = (d @ p["decoder.weight"]).reshape(x.shape)
        for pre, tape in reversed(tapes):
            dx = _encoder_layer_backward(dx, p, pre, tape, g)
        gw = np.zeros_like(p["encoder.weight"])
        np.add.at(gw, src.reshape(-1), (dx * m0 * root).reshape(-1, s.d))
        g["encoder.weight"] = gw
        _sgd(p, g, lr, clip)
        return loss

    return step
