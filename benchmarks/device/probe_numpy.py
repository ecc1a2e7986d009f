"""NumPy kit for the kernel probe's torch-free smoke run (CPU, float32): every section's plumbing
and CSV schema without PyTorch; the CUDA-only variants and kernels become skipped rows."""

from __future__ import annotations

import math

from probe_kits import Unsupported, _Timer


class NumpyKit(_Timer):
    """CPU kernels in NumPy float32: the plumbing of every section without torch."""

    name = "numpy"
    elt_bytes, dtype_name = 4, "fp32"

    def __init__(self):
        import platform

        import numpy as np
        self.np = np
        self.rng = np.random.default_rng(0)
        self.device_name = f"cpu ({platform.machine()})"
        self.gemm_dtypes = ["fp32"]
        self.attention_kernels = ("reference",)
        self.missing = {}
        self.unsupported_dtypes = {"bf16": "NumPy has no bfloat16", "fp8_e4m3": "NumPy has no FP8"}

    def _r(self, *shape):
        return self.rng.standard_normal(shape, dtype=self.np.float32)

    def gemm(self, m, n, k, dtype, layout, fast_accum):
        a, b = self._r(m, k), self._r(k, n)
        return [lambda: a @ b]

    def expert_variants(self, experts, t, d, f):
        np = self.np
        x, w1 = self._r(experts, t, d), self._r(experts, 2 * f, d)
        a, w2 = self._r(experts, t, f), self._r(experts, d, f)
        dy, dh = self._r(experts, t, d), self._r(experts, t, 2 * f)
        kinds = [lambda e: x[e] @ w1[e].T, lambda e: a[e] @ w2[e].T, lambda e: dy[e] @ w2[e],
                 lambda e: dy[e].T @ a[e], lambda e: dh[e] @ w1[e], lambda e: dh[e].T @ x[e]]

        def loop():
            for kind in kinds:
                for e in range(experts):
                    kind(e)

        def bmm():
            np.matmul(x, w1.transpose(0, 2, 1)), np.matmul(a, w2.transpose(0, 2, 1)), np.matmul(dy, w2)
            np.matmul(dy.transpose(0, 2, 1), a), np.matmul(dh, w1), np.matmul(dh.transpose(0, 2, 1), x)

        X, A, DY, DH = (v.reshape(experts * t, -1) for v in (x, a, dy, dh))

        def dense():
            X @ w1[0].T, A @ w2[0].T, DY @ w2[0], DY.T @ A, DH @ w1[0], DH.T @ X
        return {"loop": loop, "bmm": bmm, "dense": dense}

    def attention(self, it):
        if it["pass_"] != "fwd" or it["kernel"] != "reference":
            raise Unsupported("NumPy smoke kit runs the reference forward only")
        np = self.np
        s, h, d, dv = it["seq"], it["heads"], it["head_dim"], it["v_head_dim"]
        q, k, v = self._r(h, s, d), self._r(h, s, d), self._r(h, s, dv)
        mask = np.triu(np.full((s, s), -np.inf, dtype=np.float32), 1)

        def fwd():
            p = q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask
            p = np.exp(p - p.max(-1, keepdims=True))
            return (p / p.sum(-1, keepdims=True)) @ v
        return fwd

    def elementwise(self, it):
        np = self.np
        if it["op"] in ("copy", "add"):
            x, y, z = self._r(it["elements"]), self._r(it["elements"]), np.empty(it["elements"], np.float32)
            return (lambda: np.copyto(z, x)) if it["op"] == "copy" else (lambda: np.add(x, y, out=z))
        if it["op"] != "clamp_glu_fwd":
            raise Unsupported("no autograd in the NumPy smoke kit")
        x = self._r(it["rows"], 2 * it["width"])
        w = it["width"]
        return lambda: np.concatenate([np.minimum(x[:, :w], 7.0), np.clip(x[:, w:], -7.0, 7.0)], -1)

    def load(self, kind):
        a = self._r(256, 256)
        return (lambda: a @ a), 2.0 * 256 ** 3

    def free(self):
        pass
