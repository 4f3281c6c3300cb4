"""Triton kernels of the fused AW-convolution: the modulated kernels are made in registers, never stored.

Three implicit-GEMM kernels, one program per output tile, every tensor addressed through its
strides (the launcher in ``awconv.ops.triton_conv`` passes NHWC activations):

* ``forward_kernel``: ``out[n, :, p] = sum_t,c1 x[n, c1, p + t] * K̂[n, :, c1, t]``. Each program
  owns a tile of output pixels x output channels of one sample and group; per tap and block of
  input channels it loads a tile of ``x``, of the weight and of the logits (or of the low-rank
  factors, whose rank-R product it forms itself), makes ``K̂ = (1 + gate(z)) * W`` in float32
  registers and feeds it to ``tl.dot``.
* ``grad_input_kernel``: the transposed convolution with the same register-made kernels. One
  launch per stride phase (input pixels ``ih ≡ rh (mod sh)``, ``iw ≡ rw (mod sw)``): only the
  taps that reach a phase are visited, so a stride-2 layer does no masked-out work.
* ``grad_weight_kernel``: per sample, the weight-gradient GEMM ``dK̂[n] = dout[n]^T x[n]`` for
  one tile of (output, input) channels at one tap; its epilogue applies ``(1 + gate)`` and the
  gate's derivative: ``dW += dK̂ * (1 + gate(z))`` is summed over the program's samples in
  registers, and ``dz = dK̂ * W * gate'(z)`` goes to the logits' gradient (``full``) or is
  contracted at once into the gradients of the low-rank factors (``lowrank``).

Logit sources (``LOWRANK``): ``full`` reads ``z[n, p, c2, c1]`` from a logits tensor; ``lowrank``
forms ``z = sum_r u[n, c2, r, p] * v[n, r, c1, p]``. The tap index ``p`` is the kernel tap, with a
zero stride when one logit serves every tap (P = 1). Gates (``GATE``): 0 ``tanh``, with
``1 + tanh(z) = 2 sigmoid(2z)``; 1 ``sigmoid``; 2 ``none``. Everything accumulates in float32.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["GATE_CODES", "forward_kernel", "grad_input_kernel", "grad_weight_kernel"]

GATE_CODES = {"tanh": 0, "sigmoid": 1, "none": 2}


@triton.jit
def _factor(z, GATE: tl.constexpr):
    """The modulation factor ``1 + gate(z)`` (float32)."""
    if GATE == 0:
        m = 2.0 * tl.sigmoid(2.0 * z)
    elif GATE == 1:
        m = 1.0 + tl.sigmoid(z)
    else:
        m = 1.0 + z
    return m


@triton.jit
def _slope(z, GATE: tl.constexpr):
    """d(1 + gate(z))/dz, as products of sigmoids (no ``1 - s`` cancellation)."""
    if GATE == 0:
        d = 4.0 * tl.sigmoid(2.0 * z) * tl.sigmoid(-2.0 * z)
    elif GATE == 1:
        d = tl.sigmoid(z) * tl.sigmoid(-z)
    else:
        d = z * 0.0 + 1.0
    return d


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ b. ``UPCAST`` multiplies in float32: Triton's CPU interpreter (3.8) multiplies
    bfloat16 blocks as their raw 16-bit integers, so the launcher sets it there for bfloat16."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _logits(
    a, b, n, p, out_ch, in_ch, mask_out, mask_in, rank,
    sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3,
    ROWS: tl.constexpr, COLS: tl.constexpr, LOWRANK: tl.constexpr,
):  # fmt: skip
    """A (ROWS, COLS) tile of logits z[n, out_ch, in_ch, p] in float32.

    ``out_ch`` and ``in_ch`` are broadcastable index blocks (one (ROWS, 1), the other (1, COLS)).
    ``full``: ``a`` is the logits (N, P, C2, C1/g) with strides ``sa``. ``lowrank``: ``a`` is the
    output factor (N, C2, R, P), ``b`` the input factor (N, R, C1/g, P).
    """
    mask = mask_out & mask_in
    if LOWRANK:
        z = tl.zeros((ROWS, COLS), dtype=tl.float32)
        for r in range(rank):
            u = tl.load(a + n * sa0 + out_ch * sa1 + r * sa2 + p * sa3, mask=mask_out, other=0.0)
            v = tl.load(b + n * sb0 + r * sb1 + in_ch * sb2 + p * sb3, mask=mask_in, other=0.0)
            z += u.to(tl.float32) * v.to(tl.float32)
    else:
        z = tl.load(a + n * sa0 + p * sa1 + out_ch * sa2 + in_ch * sa3, mask=mask, other=0.0)
        z = z.to(tl.float32)
    return z


@triton.jit
def forward_kernel(
    x, w, a, b, out,
    height, width, in_per_group, out_per_group, out_height, out_width, groups, rank,
    sx0, sx1, sx2, sx3, sw0, sw1, sw2, sw3,
    sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3, so0, so1, so2, so3,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GATE: tl.constexpr, LOWRANK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """out (N, C2, H_out, W_out) = conv(x (N, C1, H, W), K̂); w (C2, C1/g, KH, KW).

    Grid: one dimension, (pixel tile, output-channel tile, sample * groups), pixel tile fastest.
    """
    pixels = out_height * out_width
    tiles_m = tl.cdiv(pixels, BLOCK_M)
    tiles_n = tl.cdiv(out_per_group, BLOCK_N)
    pid = tl.program_id(0)
    pid_m = pid % tiles_m
    pid_n = (pid // tiles_m) % tiles_n
    sample_group = pid // (tiles_m * tiles_n)
    n = (sample_group // groups).to(tl.int64)
    g = sample_group % groups

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < pixels
    oh = offs_m // out_width
    ow = offs_m % out_width
    out_ch = g * out_per_group + pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    mask_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N) < out_per_group

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(KH * KW):
        i = t // KW
        j = t % KW
        ih = oh * SH - PH + i * DH
        iw = ow * SW - PW + j * DW
        inside = mask_m & (ih >= 0) & (ih < height) & (iw >= 0) & (iw < width)
        rows = x + n * sx0 + ih * sx2 + iw * sx3  # (BLOCK_M,) pointers
        for k0 in range(0, in_per_group, BLOCK_K):
            in_ch = k0 + tl.arange(0, BLOCK_K)
            mask_k = in_ch < in_per_group
            tile_x = tl.load(
                rows[:, None] + (g * in_per_group + in_ch)[None, :] * sx1,
                mask=inside[:, None] & mask_k[None, :],
                other=0.0,
            )
            tile_w = tl.load(
                w + out_ch[None, :] * sw0 + in_ch[:, None] * sw1 + i * sw2 + j * sw3,
                mask=mask_k[:, None] & mask_n[None, :],
                other=0.0,
            )
            z = _logits(
                a, b, n, t, out_ch[None, :], in_ch[:, None], mask_n[None, :], mask_k[:, None], rank,
                sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3, BLOCK_K, BLOCK_N, LOWRANK,
            )  # fmt: skip
            kernel = (_factor(z, GATE) * tile_w.to(tl.float32)).to(tile_x.dtype)  # (BLOCK_K, BLOCK_N)
            acc = _dot(tile_x, kernel, acc, PRECISION, UPCAST)
    pointers = out + n * so0 + out_ch[None, :] * so1 + oh[:, None] * so2 + ow[:, None] * so3
    tl.store(pointers, acc.to(out.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def grad_input_kernel(
    grad_out, w, a, b, grad_x,
    height, width, in_per_group, out_per_group, out_height, out_width, groups, rank,
    phase_h, phase_w, first_i, step_i, first_j, step_j, phase_height, phase_width,
    sg0, sg1, sg2, sg3, sw0, sw1, sw2, sw3,
    sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3, sx0, sx1, sx2, sx3,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GATE: tl.constexpr, LOWRANK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """grad_x (N, C1, H, W) at the input pixels of one stride phase, from grad_out (N, C2, H_out, W_out).

    The phase is ``ih = phase_h + SH * a``, ``iw = phase_w + SW * b`` (a < phase_height, b <
    phase_width); the taps that reach it are ``first_i, first_i + step_i, ... < KH`` (and the same
    for j), for which ``oh = a + (phase_h + PH - i * DH) / SH`` is exact.
    Grid: one dimension, (pixel tile, input-channel tile, sample * groups), pixel tile fastest.
    """
    pixels = phase_height * phase_width
    tiles_m = tl.cdiv(pixels, BLOCK_M)
    tiles_n = tl.cdiv(in_per_group, BLOCK_N)
    pid = tl.program_id(0)
    pid_m = pid % tiles_m
    pid_n = (pid // tiles_m) % tiles_n
    sample_group = pid // (tiles_m * tiles_n)
    n = (sample_group // groups).to(tl.int64)
    g = sample_group % groups

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < pixels
    row = offs_m // phase_width
    col = offs_m % phase_width
    in_ch = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # within the group
    mask_n = in_ch < in_per_group

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for i in range(first_i, KH, step_i):
        oh = row + (phase_h + PH - i * DH) // SH
        for j in range(first_j, KW, step_j):
            ow = col + (phase_w + PW - j * DW) // SW
            inside = mask_m & (oh >= 0) & (oh < out_height) & (ow >= 0) & (ow < out_width)
            rows = grad_out + n * sg0 + oh * sg2 + ow * sg3
            for k0 in range(0, out_per_group, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                mask_k = offs_k < out_per_group
                out_ch = g * out_per_group + offs_k
                tile_g = tl.load(
                    rows[:, None] + out_ch[None, :] * sg1, mask=inside[:, None] & mask_k[None, :], other=0.0
                )
                tile_w = tl.load(
                    w + out_ch[:, None] * sw0 + in_ch[None, :] * sw1 + i * sw2 + j * sw3,
                    mask=mask_k[:, None] & mask_n[None, :],
                    other=0.0,
                )
                z = _logits(
                    a, b, n, i * KW + j, out_ch[:, None], in_ch[None, :], mask_k[:, None], mask_n[None, :],
                    rank, sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3, BLOCK_K, BLOCK_N, LOWRANK,
                )  # fmt: skip
                kernel = (_factor(z, GATE) * tile_w.to(tl.float32)).to(tile_g.dtype)  # (BLOCK_K, BLOCK_N)
                acc = _dot(tile_g, kernel, acc, PRECISION, UPCAST)
    ih = phase_h + SH * row
    iw = phase_w + SW * col
    pointers = (
        grad_x + n * sx0 + (g * in_per_group + in_ch)[None, :] * sx1 + ih[:, None] * sx2 + iw[:, None] * sx3
    )
    tl.store(pointers, acc.to(grad_x.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def grad_weight_kernel(
    grad_out, x, w, a, b, grad_w, grad_a, grad_b,
    batch, height, width, in_per_group, out_per_group, out_height, out_width, groups, rank,
    samples_per_program,
    sg0, sg1, sg2, sg3, sx0, sx1, sx2, sx3, sw0, sw1, sw2, sw3,
    sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3,
    sgw0, sgw1, sgw2, sgw3, sga0, sga1, sga2, sga3, sgb0, sgb1, sgb2, sgb3,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    GATE: tl.constexpr, LOWRANK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    NEED_WEIGHT: tl.constexpr, NEED_LOGITS: tl.constexpr, ATOMIC_LOGITS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Gradients of the weight and of the logit sources for one (C2 tile, C1/g tile, tap, group).

    ``grad_w`` (float32, zeroed) receives ``sum_n dK̂[n] * (1 + gate(z[n]))`` by atomic adds (one
    per program). ``full``: ``grad_a`` is the logits' gradient (N, P, C2, C1/g), stored, or
    atomically added in float32 when P = 1. ``lowrank``: ``grad_a`` (N, C2, R, P) and ``grad_b``
    (N, R, C1/g, P), float32 and zeroed, receive ``dz`` contracted with the other factor.
    Grid: (channel tiles * taps * groups, batch splits of ``samples_per_program`` samples).
    """
    tiles_m = tl.cdiv(out_per_group, BLOCK_M)
    tiles_n = tl.cdiv(in_per_group, BLOCK_N)
    pid = tl.program_id(0)
    pid_m = pid % tiles_m
    pid_n = (pid // tiles_m) % tiles_n
    tap_group = pid // (tiles_m * tiles_n)
    t = tap_group // groups
    g = tap_group % groups
    i = t // KW
    j = t % KW
    first = tl.program_id(1).to(tl.int64) * samples_per_program  # 64-bit sample offsets
    last = tl.minimum(first + samples_per_program, batch)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < out_per_group
    out_ch = g * out_per_group + offs_m  # (BLOCK_M,)
    in_ch = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) within the group
    mask_n = in_ch < in_per_group
    mask = mask_m[:, None] & mask_n[None, :]
    tile_w = tl.load(
        w + out_ch[:, None] * sw0 + in_ch[None, :] * sw1 + i * sw2 + j * sw3, mask=mask, other=0.0
    ).to(tl.float32)
    pixels = out_height * out_width
    grad_w_acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for n in range(first, last):
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, pixels, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            oh = offs_k // out_width
            ow = offs_k % out_width
            ih = oh * SH - PH + i * DH
            iw = ow * SW - PW + j * DW
            mask_k = offs_k < pixels
            inside = mask_k & (ih >= 0) & (ih < height) & (iw >= 0) & (iw < width)
            tile_g = tl.load(
                grad_out + n * sg0 + out_ch[:, None] * sg1 + oh[None, :] * sg2 + ow[None, :] * sg3,
                mask=mask_m[:, None] & mask_k[None, :],
                other=0.0,
            )  # (BLOCK_M, BLOCK_K)
            tile_x = tl.load(
                x
                + n * sx0
                + (g * in_per_group + in_ch)[None, :] * sx1
                + ih[:, None] * sx2
                + iw[:, None] * sx3,
                mask=inside[:, None] & mask_n[None, :],
                other=0.0,
            )  # (BLOCK_K, BLOCK_N)
            acc = _dot(tile_g, tile_x, acc, PRECISION, UPCAST)
        z = _logits(
            a, b, n, t, out_ch[:, None], in_ch[None, :], mask_m[:, None], mask_n[None, :], rank,
            sa0, sa1, sa2, sa3, sb0, sb1, sb2, sb3, BLOCK_M, BLOCK_N, LOWRANK,
        )  # fmt: skip
        if NEED_WEIGHT:
            grad_w_acc += acc * _factor(z, GATE)
        if NEED_LOGITS:
            grad_z = acc * tile_w * _slope(z, GATE)
            if LOWRANK:
                for r in range(rank):
                    v = tl.load(b + n * sb0 + r * sb1 + in_ch * sb2 + t * sb3, mask=mask_n, other=0.0)
                    u = tl.load(a + n * sa0 + out_ch * sa1 + r * sa2 + t * sa3, mask=mask_m, other=0.0)
                    tl.atomic_add(
                        grad_a + n * sga0 + out_ch * sga1 + r * sga2 + t * sga3,
                        tl.sum(grad_z * v.to(tl.float32)[None, :], axis=1),
                        mask=mask_m,
                    )
                    tl.atomic_add(
                        grad_b + n * sgb0 + r * sgb1 + in_ch * sgb2 + t * sgb3,
                        tl.sum(grad_z * u.to(tl.float32)[:, None], axis=0),
                        mask=mask_n,
                    )
            else:
                pointers = grad_a + n * sga0 + t * sga1 + out_ch[:, None] * sga2 + in_ch[None, :] * sga3
                if ATOMIC_LOGITS:
                    tl.atomic_add(pointers, grad_z, mask=mask)
                else:
                    tl.store(pointers, grad_z.to(grad_a.dtype.element_ty), mask=mask)
    if NEED_WEIGHT:
        pointers = grad_w + out_ch[:, None] * sgw0 + in_ch[None, :] * sgw1 + i * sgw2 + j * sgw3
        tl.atomic_add(pointers, grad_w_acc, mask=mask)
