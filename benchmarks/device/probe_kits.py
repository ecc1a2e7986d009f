"""Kernels and clocks for the kernel probe: PyTorch on CUDA or the CPU (NumPy for the torch-free
smoke run is probe_numpy.py).

A kit turns a planned item into callables and times them: ``gemm``, ``expert_variants``,
``attention``, ``elementwise``, ``load`` (the power section's busy kernel), ``time``.
Torch is imported inside :class:`TorchKit` only, so importing this module needs no torch.
Timing follows the device method: warm-ups first, then samples of ``inner`` back-to-back
calls between two CUDA events (host clock on the CPU), median over samples; operand sets
are rotated so that repeated calls do not run out of the L2 cache.
"""

from __future__ import annotations

import math
import time

from probe_plan import summarize


class Unsupported(Exception):
    """The kernel or format does not run here (recorded as a skipped row, not an error)."""


class _Timer:
    """Median-of-samples timing shared by every kit (see the module docstring)."""

    time_kw: dict = {}  # the smoke run shortens the samples (kernel_probe.py)
    elt_bytes, dtype_name = 2, "bf16"

    def sync(self):
        pass

    def mark(self):
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        return b - a

    def time(self, fns, target_s=0.02, min_samples=3, max_samples=30, min_sample_s=5e-4, warmup=2,
             graph=True) -> dict:
        """``graph=False`` keeps eager timing for every kernel (the expert loop's host cost is the point)."""
        kw = {**dict(target_s=target_s, min_samples=min_samples, max_samples=max_samples,
                     min_sample_s=min_sample_s, warmup=warmup), **self.time_kw}
        return self._time(fns, graph=graph, **kw)

    def _time(self, fns, target_s, min_samples, max_samples, min_sample_s, warmup, graph=False) -> dict:
        for i in range(max(warmup, len(fns))):
            fns[i % len(fns)]()
        self.sync()
        a = self.mark()
        fns[0]()
        b = self.mark()
        self.sync()
        t1 = max(self.seconds(a, b), 1e-7)
        inner = min(200, max(1, math.ceil(min_sample_s / t1)))
        samples = min(max_samples, max(min_samples, math.ceil(target_s / (inner * t1))))
        marks, j = [], 0
        for _ in range(samples):
            a = self.mark()
            for _ in range(inner):
                fns[j % len(fns)]()
                j += 1
            marks.append((a, self.mark()))
        self.sync()
        times = [self.seconds(a, b) / inner for a, b in marks]
        return {**summarize(times), "reps": samples * inner}


# --------------------------------------------------------------------------- PyTorch
class TorchKit(_Timer):
    """PyTorch kernels: cuBLAS / cuBLASLt GEMMs, torch._scaled_mm FP8, SDPA flash / cuDNN."""

    def __init__(self, device: str = "cuda", streams: int = 4):
        import torch
        self.torch = torch
        self.dev = torch.device(device)
        self.cuda = self.dev.type == "cuda"
        self.streams = streams
        torch.manual_seed(0)
        if self.cuda:
            p = torch.cuda.get_device_properties(self.dev)
            self.device_name = p.name
            self.l2_bytes = getattr(p, "L2_cache_size", 50 << 20)
            self.name = "torch-cuda"
        else:
            import platform
            self.device_name = f"cpu ({platform.machine()})"
            self.l2_bytes = 1 << 20
            self.name = "torch-cpu"
        # BF16 on the GPU; FP32 on the CPU, where BF16 matmuls are emulated and slow (smoke runs only)
        self.float = torch.bfloat16 if self.cuda else torch.float32
        self.elt_bytes, self.dtype_name = (2, "bf16") if self.cuda else (4, "fp32")
        self.gemm_dtypes, self.unsupported_dtypes = [self.dtype_name], {}
        self.missing = {}  # variant -> why it could not be built
        self.attention_kernels = ("flash", "cudnn") if self.cuda else ("reference",)
        reason = self._fp8_reason()
        if reason:
            self.unsupported_dtypes["fp8_e4m3"] = reason
        else:
            self.gemm_dtypes.append("fp8_e4m3")

    # -- clocks
    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.dev)

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        e = self.torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def seconds(self, a, b):
        if not self.cuda:
            return b - a
        b.synchronize()
        return a.elapsed_time(b) / 1e3

    def free(self):
        if self.cuda:
            self.torch.cuda.empty_cache()

    graph_below_s = 5e-5  # kernels shorter than this are also timed from a CUDA graph

    def _time(self, fns, graph=True, **kw) -> dict:
        """Eager timing; for short kernels, also replays of a captured graph of back-to-back
        calls, whose median is kept (GPU time without the host's launch gaps; eager in the note)."""
        r = super()._time(fns, **kw)
        if not graph or not self.cuda or r["median_s"] >= self.graph_below_s:
            return r
        t = self.torch
        inner = max(1, math.ceil(kw.get("min_sample_s", 5e-4) / r["median_s"]))
        try:
            side = t.cuda.Stream(device=self.dev)
            side.wait_stream(t.cuda.current_stream(self.dev))
            with t.cuda.stream(side):
                fns[0]()
            t.cuda.current_stream(self.dev).wait_stream(side)
            g = t.cuda.CUDAGraph()
            with t.cuda.graph(g):
                for j in range(inner):
                    fns[j % len(fns)]()
            g_r = super()._time([g.replay], **{**kw, "min_sample_s": 0.0})
        except Exception as e:  # noqa: BLE001 - keep the eager number
            return {**r, "note": f"eager timing (graph capture failed: {type(e).__name__})"}
        return {**g_r, "median_s": g_r["median_s"] / inner, "p10_s": g_r["p10_s"] / inner,
                "p90_s": g_r["p90_s"] / inner, "reps": g_r["reps"] * inner,
                "note": f"CUDA-graph replay of {inner} calls; eager median {r['median_s']:.3g} s"}

    def info(self) -> dict:
        t = self.torch
        out = {"torch": t.__version__, "backend": self.name, "device": self.device_name}
        if self.cuda:
            p = t.cuda.get_device_properties(self.dev)
            out.update(cuda=t.version.cuda, cudnn=t.backends.cudnn.version(), sm_count=p.multi_processor_count,
                       l2_bytes=self.l2_bytes, memory_gib=round(p.total_memory / 2 ** 30, 1),
                       capability=f"{p.major}.{p.minor}")
        return out

    def _fp8_reason(self) -> str:
        t = self.torch
        if not self.cuda:
            return "FP8 GEMM needs CUDA (torch._scaled_mm)"
        if not hasattr(t, "_scaled_mm") or not hasattr(t, "float8_e4m3fn"):
            return "this torch has no _scaled_mm / float8_e4m3fn"
        if t.cuda.get_device_capability(self.dev) < (8, 9):
            return "FP8 tensor cores need compute capability 8.9+"
        try:
            a = t.randn(32, 32, device=self.dev).to(t.float8_e4m3fn)
            one = t.ones((), device=self.dev)
            t._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=t.bfloat16)
        except Exception as e:  # noqa: BLE001 - any refusal means: skip FP8 cleanly
            return f"torch._scaled_mm refused: {type(e).__name__}: {str(e)[:120]}"
        return ""

    def _sets(self, nbytes: float) -> int:
        """Operand sets to rotate so that the working set is 3x the L2 (at most 8)."""
        return max(1, min(8, math.ceil(3 * self.l2_bytes / max(nbytes, 1))))

    def _rand(self, *shape, dtype=None):
        t = self.torch
        return t.randn(*shape, device=self.dev, dtype=dtype or self.float)

    # -- GEMM
    def gemm(self, m, n, k, dtype, layout, fast_accum):
        t = self.torch
        if dtype == "fp8_e4m3":
            if "fp8_e4m3" in self.unsupported_dtypes:
                raise Unsupported(self.unsupported_dtypes["fp8_e4m3"])
            one = t.ones((), device=self.dev)
            fns = []
            for _ in range(self._sets(m * k + n * k + 2 * m * n)):
                a = (0.5 * self._rand(m, k)).to(t.float8_e4m3fn)
                w = (0.5 * self._rand(n, k)).to(t.float8_e4m3fn)
                fns.append(lambda a=a, w=w: t._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=t.bfloat16,
                                                         use_fast_accum=fast_accum))
            return fns
        if dtype != self.dtype_name:
            raise Unsupported(f"dtype {dtype}")
        fns = []
        for _ in range(self._sets(self.elt_bytes * (m * k + n * k + m * n))):
            out = t.empty(m, n, device=self.dev, dtype=self.float)
            if layout == "TN":    # y = x W^T
                a, b = self._rand(m, k), self._rand(n, k).t()
            elif layout == "NN":  # dx = dy W
                a, b = self._rand(m, k), self._rand(k, n)
            else:                 # dW = dy^T x
                a, b = self._rand(k, m).t(), self._rand(k, n)
            fns.append(lambda a=a, b=b, out=out: t.mm(a, b, out=out))
        return fns

    # -- per-expert loop
    def expert_variants(self, experts, tk, d, f):
        """The six expert GEMMs of one MoE layer (forward FC1, FC2; backward their dgrad, wgrad)."""
        t, E = self.torch, experts
        x, w1, a, w2 = self._rand(E, tk, d), self._rand(E, 2 * f, d), self._rand(E, tk, f), self._rand(E, d, f)
        dy, dh = self._rand(E, tk, d), self._rand(E, tk, 2 * f)
        h, y, da, dx = t.empty_like(dh), t.empty_like(dy), t.empty_like(a), t.empty_like(x)
        dw2, dw1 = t.empty_like(w2), t.empty_like(w1)
        kinds = [lambda e: t.mm(x[e], w1[e].t(), out=h[e]), lambda e: t.mm(a[e], w2[e].t(), out=y[e]),
                 lambda e: t.mm(dy[e], w2[e], out=da[e]), lambda e: t.mm(dy[e].t(), a[e], out=dw2[e]),
                 lambda e: t.mm(dh[e], w1[e], out=dx[e]), lambda e: t.mm(dh[e].t(), x[e], out=dw1[e])]

        def loop():  # one grouped-GEMM call per kind, looping the experts (TE GroupedLinear)
            for kind in kinds:
                for e in range(E):
                    kind(e)

        def bmm():
            t.bmm(x, w1.transpose(1, 2), out=h), t.bmm(a, w2.transpose(1, 2), out=y), t.bmm(dy, w2, out=da)
            t.bmm(dy.transpose(1, 2), a, out=dw2), t.bmm(dh, w1, out=dx), t.bmm(dh.transpose(1, 2), x, out=dw1)
        X, A, DY, DH, Hh, Y, DA, DX = (v.view(E * tk, -1) for v in (x, a, dy, dh, h, y, da, dx))

        def dense():  # the same FLOPs as one GEMM per kind (what the model charges before the overhead)
            t.mm(X, w1[0].t(), out=Hh), t.mm(A, w2[0].t(), out=Y), t.mm(DY, w2[0], out=DA)
            t.mm(DY.t(), A, out=dw2[0]), t.mm(DH, w1[0], out=DX), t.mm(DH.t(), X, out=dw1[0])
        loop.outputs = bmm.outputs = (h, y, da, dw2, dx, dw1)
        out = {"loop": loop, "bmm": bmm, "dense": dense}
        if self.cuda:
            out["loop_streams"] = self._streamed(kinds, E)
            out["loop_graph"] = self._graphed(loop)
        try:
            out["grouped"] = self._grouped(x, w1, a, w2, dy, dh, bmm)
        except Exception as e:  # noqa: BLE001 - no torch._grouped_mm, or it refuses these layouts
            self.missing["grouped"] = f"torch._grouped_mm: {type(e).__name__}: {str(e)[:160]}"
        return out

    def _grouped(self, x, w1, a, w2, dy, dh, bmm):
        """The six products as torch._grouped_mm calls (one CUTLASS grouped kernel each), offsets
        marking each expert's rows; checked once against the batched products."""
        t = self.torch
        E, tk, d = x.shape
        offs = (t.arange(1, E + 1, device=self.dev, dtype=t.int32) * tk)
        X, A, DY, DH = (v.reshape(E * tk, -1) for v in (x, a, dy, dh))
        w1c, w2c = w1.transpose(1, 2).contiguous(), w2.transpose(1, 2).contiguous()  # column-major copies
        g = t._grouped_mm

        def run():
            return (g(X, w1.transpose(1, 2), offs=offs), g(A, w2.transpose(1, 2), offs=offs),
                    g(DY, w2c.transpose(1, 2), offs=offs), g(DY.t(), A, offs=offs),
                    g(DH, w1c.transpose(1, 2), offs=offs), g(DH.t(), X, offs=offs))
        got = run()
        bmm()
        ref = bmm.outputs
        errs = [((o.float().reshape(r.shape) - r.float()).norm() / r.float().norm()).item() for o, r in zip(got, ref)]
        run.note = "grouped vs bmm relative difference " + " ".join(f"{e:.1e}" for e in errs)
        return run

    def check_experts(self, variants) -> float:
        """Largest relative difference between the looped and the batched products (correct first)."""
        outs = variants["loop"].outputs
        for o in outs:
            o.fill_(float("nan"))  # poisoned: an unwritten output cannot pass
        variants["loop"]()
        ref = [o.float().clone() for o in outs]
        for o in outs:
            o.fill_(float("nan"))
        variants["bmm"]()
        errs = [((o.float() - r).norm() / r.norm()).item() for o, r in zip(outs, ref)]
        return float("inf") if any(e != e for e in errs) else max(errs)  # NaN: left unwritten

    def _streamed(self, kinds, E):
        """The loop spread over compute streams, joined after each kind (nvte_multi_stream_cublas_gemm)."""
        t = self.torch
        streams = [t.cuda.Stream(device=self.dev) for _ in range(self.streams)]

        def run():
            main = t.cuda.current_stream(self.dev)
            for kind in kinds:
                ev = main.record_event()
                for s in streams[:E]:
                    s.wait_event(ev)
                for e in range(E):
                    with t.cuda.stream(streams[e % len(streams)]):
                        kind(e)
                for s in streams[:E]:
                    main.wait_event(s.record_event())
        return run

    def _graphed(self, fn):
        """``fn`` captured in a CUDA graph: replays without the host's launches (GPU-side cost only)."""
        t = self.torch
        side = t.cuda.Stream(device=self.dev)
        side.wait_stream(t.cuda.current_stream(self.dev))
        with t.cuda.stream(side):
            fn()
        t.cuda.current_stream(self.dev).wait_stream(side)
        g = t.cuda.CUDAGraph()
        with t.cuda.graph(g):
            fn()
        return g.replay

    # -- attention
    def attention(self, it):
        t = self.torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        F = t.nn.functional
        backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                   "reference": SDPBackend.MATH}[it["kernel"]]
        b, h, kvh, s = it["batch"], it["heads"], it["kv_heads"], it["seq"]
        grad = it["pass_"] == "fwd_bwd"
        q = self._rand(b, h, s, it["head_dim"]).requires_grad_(grad)
        k = self._rand(b, kvh, s, it["head_dim"]).requires_grad_(grad)
        v = self._rand(b, kvh, s, it["v_head_dim"]).requires_grad_(grad)
        dout = self._rand(b, h, s, it["v_head_dim"])
        note = ""

        def make(kw):
            def fwd():
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
            if not grad:
                return fwd
            return lambda: t.autograd.grad(fwd(), (q, k, v), dout)
        fn = make({"enable_gqa": kvh != h} if kvh != h else {})
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - GQA refused: expand K/V to every head, same FLOPs
            if kvh == h:
                raise Unsupported(f"{it['kernel']}: {type(e).__name__}: {str(e)[:160]}") from None
            k = k.detach().repeat_interleave(h // kvh, 1).requires_grad_(grad)
            v = v.detach().repeat_interleave(h // kvh, 1).requires_grad_(grad)
            fn, note = make({}), "K/V expanded to every head (enable_gqa refused)"
            try:
                fn()
            except Exception as e2:  # noqa: BLE001
                raise Unsupported(f"{it['kernel']}: {type(e2).__name__}: {str(e2)[:160]}") from None
        fn.note = note
        return fn

    # -- elementwise
    def elementwise(self, it):
        t = self.torch
        if it["op"] in ("copy", "add"):
            n = it["elements"]
            x, y, z = self._rand(n), self._rand(n), t.empty(n, device=self.dev, dtype=self.float)
            return (lambda: z.copy_(x)) if it["op"] == "copy" else (lambda: t.add(x, y, out=z))
        grad = it["op"] == "clamp_glu_fwd_bwd"
        x = (4 * self._rand(it["rows"], 2 * it["width"])).requires_grad_(grad)
        gout = self._rand(it["rows"], 2 * it["width"])

        def fwd():  # Megatron-Core weighted_bias_quick_geglu_impl's eager clamp + cat (clamp value 7)
            x_glu, x_lin = t.chunk(x, 2, -1)
            return t.cat([x_glu.clamp(max=7.0), x_lin.clamp(-7.0, 7.0)], -1)
        return (lambda: t.autograd.grad(fwd(), x, gout)) if grad else fwd

    # -- power load
    def load(self, kind):
        """``(callable, flop per call)``: a large BF16 GEMM, or an HBM copy (FLOP 0)."""
        t = self.torch
        if kind == "copy":
            x = self._rand(1 << 28 if self.cuda else 1 << 20)
            z = t.empty_like(x)
            return (lambda: z.copy_(x)), 0.0
        n = 8192 if self.cuda else 256
        a, b = self._rand(n, n), self._rand(n, n)
        out = t.empty(n, n, device=self.dev, dtype=self.float)
        return (lambda: t.mm(a, b, out=out)), 2.0 * n ** 3


def make_kit(backend: str, device: str):
    """``backend``: 'torch', 'numpy' or 'auto' (torch where it imports, else NumPy)."""
    from probe_numpy import NumpyKit
    if backend in ("torch", "auto"):
        try:
            import torch
        except ImportError:
            if backend == "torch":
                raise
        else:
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            return TorchKit(device)
    return NumpyKit()
