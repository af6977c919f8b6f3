"""Triton kernels of criss-cross attention (forward and backward), one axis per launch.

Imported on first use by `ccnet.ops.criss_cross_triton`, which launches the kernels and
describes the algorithm, the layouts and the memory traffic.

Matrix products are ``tl.dot(a.to(DOT), b.to(DOT))``: ``DOT`` is the operands' own dtype
(the casts are no-ops), except under Triton's interpreter with bfloat16 inputs, where it is
float32: the interpreter cannot multiply bfloat16, and products of bfloat16 numbers are exact in
float32, so the result is the GPU's up to summation order. The helpers are few and coarse on
purpose: every ``@triton.jit`` call costs milliseconds in the interpreter.

Geometry shared by every kernel: the tensors are ``(B, *spatial, C)`` in memory terms, a
position ``p`` in ``[0, N)`` (``N = prod(spatial)``) being the flat spatial index, so element
``(b, p, c)`` sits at ``b * stride_b + p * stride_p + c * stride_c`` (contiguous NCHW:
``stride_p = 1``; channels-last: ``stride_c = 1``). The lines along one spatial axis of length
``L`` have the positions ``start + j * STEP`` (``STEP`` = product of the later spatial sizes);
each batch item has ``N // L`` of them.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _line_start(line, N, L, STEP):
    """Batch index (int64) and first position of line number ``line`` in ``[0, B * N // L)``."""
    per_batch = N // L
    batch = line // per_batch
    r = line % per_batch
    start = (r // STEP) * (L * STEP) + r % STEP
    return batch.to(tl.int64), start


@triton.jit
def _load(ptr, batch, pos, pos_ok, chan, chan_ok, stride_b, stride_p, stride_c):
    """A tile of positions x channels, zeros outside the line and the channels."""
    offsets = batch * stride_b + pos.to(tl.int64)[:, None] * stride_p + chan.to(tl.int64)[None, :] * stride_c
    return tl.load(ptr + offsets, mask=pos_ok[:, None] & chan_ok[None, :], other=0.0)


@triton.jit
def _logaddexp(a, b):
    """log(exp(a) + exp(b)) for float32 tensors that may hold -inf (both -inf gives -inf)."""
    top = tl.maximum(a, b)
    safe = tl.where(top == float("-inf"), 0.0, top)
    return safe + tl.log(tl.exp(a - safe) + tl.exp(b - safe))


@triton.jit
def _forward_kernel(
    q_ptr, k_ptr, v_ptr, prev_ptr, out_ptr, lse_in_ptr, lse_out_ptr,
    q_sb, q_sp, q_sc, k_sb, k_sp, k_sc, v_sb, v_sp, v_sc, o_sb, o_sp, o_sc,
    N, L, STEP, CQ, C,
    MASK_CENTRE: tl.constexpr, HAS_PREV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_CQ: tl.constexpr, BLOCK_C: tl.constexpr,
    CQ_CHUNKS: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr,
):
    """Attention along one axis for ``BLOCK_M`` positions of one line and ``BLOCK_C`` value
    channels, merged with the axes done before through the log-sum-exp.

    Online softmax over the line's keys in blocks of ``BLOCK_N``, the energies over the query/key
    channels in ``CQ_CHUNKS`` tiles of ``BLOCK_CQ`` (one: q is loaded once) (``MASK_CENTRE``: the position
    itself is left out, it is counted on the last axis). With ``o_a, lse_a`` this axis's
    normalised output and log-sum-exp and ``o_prev, lse_prev`` those of the axes before
    (``HAS_PREV``): ``lse = logaddexp(lse_prev, lse_a)``,
    ``out = o_prev * exp(lse_prev - lse) + o_a * exp(lse_a - lse)``, the joint softmax of all
    axes so far. ``prev_ptr`` (float32) may alias ``out_ptr``; ``out`` and ``prev`` share strides.
    """
    pid = tl.program_id(0)
    blocks_c = tl.cdiv(C, BLOCK_C)
    blocks_m = tl.cdiv(L, BLOCK_M)
    block_c = pid % blocks_c
    block_m = (pid // blocks_c) % blocks_m
    batch, start = _line_start(pid // (blocks_c * blocks_m), N, L, STEP)

    i = block_m * BLOCK_M + tl.arange(0, BLOCK_M)  # query indices on the line
    i_ok = i < L
    cq = tl.arange(0, BLOCK_CQ)
    c = block_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    if CQ_CHUNKS == 1:  # the queries' channels in one tile, loaded once
        q = _load(q_ptr, batch, start + i * STEP, i_ok, cq, cq < CQ, q_sb, q_sp, q_sc)

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_C], tl.float32)
    for first in range(0, L, BLOCK_N):
        j = first + tl.arange(0, BLOCK_N)
        j_ok = j < L
        if CQ_CHUNKS == 1:
            k = _load(k_ptr, batch, start + j * STEP, j_ok, cq, cq < CQ, k_sb, k_sp, k_sc)
            energy = tl.dot(q.to(DOT), tl.trans(k.to(DOT)), input_precision=PRECISION)  # (BLOCK_M, BLOCK_N), float32
        else:  # more query/key channels than one tile: the energies summed over chunks of them
            energy = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
            for cq_first in range(0, CQ, BLOCK_CQ):
                chunk = cq_first + cq
                q = _load(q_ptr, batch, start + i * STEP, i_ok, chunk, chunk < CQ, q_sb, q_sp, q_sc)
                k = _load(k_ptr, batch, start + j * STEP, j_ok, chunk, chunk < CQ, k_sb, k_sp, k_sc)
                energy += tl.dot(q.to(DOT), tl.trans(k.to(DOT)), input_precision=PRECISION)
        keep = j_ok[None, :]
        if MASK_CENTRE:
            keep = keep & (i[:, None] != j[None, :])
        energy = tl.where(keep, energy, float("-inf"))
        m_new = tl.maximum(m, tl.max(energy, axis=1))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing yet: no NaN
        scale = tl.exp(m - shift)
        p = tl.exp(energy - shift[:, None])
        total = total * scale + tl.sum(p, axis=1)
        v = _load(v_ptr, batch, start + j * STEP, j_ok, c, c_ok, v_sb, v_sp, v_sc)
        acc = acc * scale[:, None] + tl.dot(p.to(v.dtype).to(DOT), v.to(DOT), input_precision=PRECISION)
        m = m_new

    has_any = total > 0.0
    lse = tl.where(has_any, m + tl.log(tl.where(has_any, total, 1.0)), float("-inf"))
    out = acc / tl.where(has_any, total, 1.0)[:, None]
    lse_offsets = batch * N + start + i * STEP
    if HAS_PREV:
        lse_prev = tl.load(lse_in_ptr + lse_offsets, mask=i_ok, other=0.0)
        lse_all = _logaddexp(lse_prev, lse)
        shift = tl.where(lse_all == float("-inf"), 0.0, lse_all)
        prev = _load(prev_ptr, batch, start + i * STEP, i_ok, c, c_ok, o_sb, o_sp, o_sc)
        out = prev * tl.exp(lse_prev - shift)[:, None] + out * tl.exp(lse - shift)[:, None]
        lse = lse_all
    out_offsets = batch * o_sb + (start + i * STEP).to(tl.int64)[:, None] * o_sp + c.to(tl.int64)[None, :] * o_sc
    tl.store(out_ptr + out_offsets, out, mask=i_ok[:, None] & c_ok[None, :])
    if block_c == 0:
        tl.store(lse_out_ptr + lse_offsets, lse, mask=i_ok)


@triton.jit
def _delta_kernel(
    o_ptr, do_ptr, delta_ptr, o_sb, o_sp, o_sc, g_sb, g_sp, g_sc, N, TOTAL, C,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``delta[b, p] = sum_c dO[b, p, c] * O[b, p, c]`` in float32: each position's
    ``sum_j A_ij dA_ij`` over its whole criss-cross path (flash-attention's D)."""
    # int64 before the product: B * N may exceed 2**31 (int32 would wrap and store before delta)
    g = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    ok = g < TOTAL
    batch = g // N
    pos = g % N
    acc = tl.zeros([BLOCK_P], tl.float32)
    for first in range(0, C, BLOCK_C):
        c = (first + tl.arange(0, BLOCK_C)).to(tl.int64)
        mask = ok[:, None] & (c < C)[None, :]
        o = tl.load(o_ptr + batch[:, None] * o_sb + pos[:, None] * o_sp + c[None, :] * o_sc, mask=mask, other=0.0)
        do = tl.load(do_ptr + batch[:, None] * g_sb + pos[:, None] * g_sp + c[None, :] * g_sc, mask=mask, other=0.0)
        acc += tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(delta_ptr + g, acc, mask=ok)


@triton.jit
def _accumulate(prev_ptr, out_ptr, value, batch, pos, pos_ok, chan, chan_ok, stride_b, stride_p, stride_c,
                HAS_PREV: tl.constexpr):
    """``out = prev + value`` (or ``value``) on a positions x channels tile; ``prev`` is float32
    with ``out``'s strides and may alias it."""
    offsets = batch * stride_b + pos.to(tl.int64)[:, None] * stride_p + chan.to(tl.int64)[None, :] * stride_c
    mask = pos_ok[:, None] & chan_ok[None, :]
    if HAS_PREV:
        value += tl.load(prev_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, value, mask=mask)


@triton.jit
def _products(a_ptr, a_sb, a_sp, a_sc, a_pos, a_ok, b_ptr, b_sb, b_sp, b_sc, b_pos, b_ok, batch, CH,
              BLOCK: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr):
    """``A @ B^T`` in float32 for a rows-of-``a`` x rows-of-``b`` tile, summed over the ``CH``
    channels in chunks of ``BLOCK``: only two operand tiles live at a time, whatever ``CH``."""
    chan = tl.arange(0, BLOCK)
    a = _load(a_ptr, batch, a_pos, a_ok, chan, chan < CH, a_sb, a_sp, a_sc)
    b = _load(b_ptr, batch, b_pos, b_ok, chan, chan < CH, b_sb, b_sp, b_sc)
    acc = tl.dot(a.to(DOT), tl.trans(b.to(DOT)), input_precision=PRECISION)
    for first in range(BLOCK, CH, BLOCK):
        chunk = first + chan
        a = _load(a_ptr, batch, a_pos, a_ok, chunk, chunk < CH, a_sb, a_sp, a_sc)
        b = _load(b_ptr, batch, b_pos, b_ok, chunk, chunk < CH, b_sb, b_sp, b_sc)
        acc += tl.dot(a.to(DOT), tl.trans(b.to(DOT)), input_precision=PRECISION)
    return acc


@triton.jit
def _backward_tile(line_blocks, chan_blocks, N, L, STEP):
    """Batch (int64), first position, block along the line and channel block of this program, the
    channel blocks varying fastest, then the ``line_blocks`` blocks of each line."""
    pid = tl.program_id(0)
    chan_block = pid % chan_blocks
    line_block = (pid // chan_blocks) % line_blocks
    batch, start = _line_start(pid // (chan_blocks * line_blocks), N, L, STEP)
    return batch, start, line_block, chan_block


@triton.jit
def _backward_dv_kernel(
    q_ptr, k_ptr, do_ptr, lse_ptr, dv_prev_ptr, dv_ptr,
    q_sb, q_sp, q_sc, k_sb, k_sp, k_sc, g_sb, g_sp, g_sc, dv_sb, dv_sp, dv_sc,
    N, L, STEP, CQ, C,
    MASK_CENTRE: tl.constexpr, HAS_PREV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_KQ: tl.constexpr,
    PRECISION: tl.constexpr, DOT: tl.constexpr,
):
    """``dV_j = A^T dO`` along one axis for ``BLOCK_N`` keys ``j`` of one line and ``BLOCK_C``
    value channels, looping over the line's queries ``BLOCK_M`` at a time: the attention
    ``A^T = exp(E^T - lse)`` is recomputed from q and k (keys x queries); added to the axes before
    (``HAS_PREV``)."""
    batch, start, block_n, block_c = _backward_tile(tl.cdiv(L, BLOCK_N), tl.cdiv(C, BLOCK_C), N, L, STEP)
    j = block_n * BLOCK_N + tl.arange(0, BLOCK_N)
    j_ok = j < L
    c = block_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    acc = tl.zeros([BLOCK_N, BLOCK_C], tl.float32)
    for first in range(0, L, BLOCK_M):
        i = first + tl.arange(0, BLOCK_M)
        i_ok = i < L
        energy_t = _products(k_ptr, k_sb, k_sp, k_sc, start + j * STEP, j_ok, q_ptr, q_sb, q_sp, q_sc,
                             start + i * STEP, i_ok, batch, CQ, BLOCK_KQ, PRECISION, DOT)  # (BLOCK_N, BLOCK_M)
        lse = tl.load(lse_ptr + batch * N + start + i * STEP, mask=i_ok, other=0.0)
        keep = j_ok[:, None] & i_ok[None, :]
        if MASK_CENTRE:
            keep = keep & (j[:, None] != i[None, :])
        attention_t = tl.where(keep, tl.exp(energy_t - lse[None, :]), 0.0)
        do = _load(do_ptr, batch, start + i * STEP, i_ok, c, c_ok, g_sb, g_sp, g_sc)  # (BLOCK_M, BLOCK_C)
        acc += tl.dot(attention_t.to(do.dtype).to(DOT), do.to(DOT), input_precision=PRECISION)
    _accumulate(dv_prev_ptr, dv_ptr, acc, batch, start + j * STEP, j_ok, c, c_ok, dv_sb, dv_sp, dv_sc, HAS_PREV)


@triton.jit
def _backward_dk_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_prev_ptr, dk_ptr,
    q_sb, q_sp, q_sc, k_sb, k_sp, k_sc, v_sb, v_sp, v_sc, g_sb, g_sp, g_sc, dk_sb, dk_sp, dk_sc,
    N, L, STEP, CQ, C,
    MASK_CENTRE: tl.constexpr, HAS_PREV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_CQ: tl.constexpr, BLOCK_KQ: tl.constexpr,
    BLOCK_KV: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr, GRAD_PRECISION: tl.constexpr,
):
    """``dK_j = dE^T Q`` along one axis for ``BLOCK_N`` keys of one line and ``BLOCK_CQ`` of the
    query/key channels, looping over the queries ``BLOCK_M`` at a time: ``A^T`` as in the dV
    kernel, ``dA^T = V_j dO^T`` over the value channels in chunks of ``BLOCK_C``,
    ``dE^T = A^T (dA^T - delta)`` (float32)."""
    batch, start, block_n, block_cq = _backward_tile(tl.cdiv(L, BLOCK_N), tl.cdiv(CQ, BLOCK_CQ), N, L, STEP)
    j = block_n * BLOCK_N + tl.arange(0, BLOCK_N)
    j_ok = j < L
    cq = block_cq * BLOCK_CQ + tl.arange(0, BLOCK_CQ)
    cq_ok = cq < CQ
    acc = tl.zeros([BLOCK_N, BLOCK_CQ], tl.float32)
    for first in range(0, L, BLOCK_M):
        i = first + tl.arange(0, BLOCK_M)
        i_ok = i < L
        energy_t = _products(k_ptr, k_sb, k_sp, k_sc, start + j * STEP, j_ok, q_ptr, q_sb, q_sp, q_sc,
                             start + i * STEP, i_ok, batch, CQ, BLOCK_KQ, PRECISION, DOT)
        lse = tl.load(lse_ptr + batch * N + start + i * STEP, mask=i_ok, other=0.0)
        delta = tl.load(delta_ptr + batch * N + start + i * STEP, mask=i_ok, other=0.0)
        keep = j_ok[:, None] & i_ok[None, :]
        if MASK_CENTRE:
            keep = keep & (j[:, None] != i[None, :])
        attention_t = tl.where(keep, tl.exp(energy_t - lse[None, :]), 0.0)
        grad_attention_t = _products(v_ptr, v_sb, v_sp, v_sc, start + j * STEP, j_ok, do_ptr, g_sb, g_sp, g_sc,
                                     start + i * STEP, i_ok, batch, C, BLOCK_KV, PRECISION, DOT)
        grad_energy_t = attention_t * (grad_attention_t - delta[None, :])  # (BLOCK_N, BLOCK_M), float32
        q = _load(q_ptr, batch, start + i * STEP, i_ok, cq, cq_ok, q_sb, q_sp, q_sc)  # (BLOCK_M, BLOCK_CQ)
        acc += tl.dot(grad_energy_t, q.to(tl.float32), input_precision=GRAD_PRECISION)
    _accumulate(dk_prev_ptr, dk_ptr, acc, batch, start + j * STEP, j_ok, cq, cq_ok, dk_sb, dk_sp, dk_sc, HAS_PREV)


@triton.jit
def _backward_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_prev_ptr, dq_ptr,
    q_sb, q_sp, q_sc, k_sb, k_sp, k_sc, v_sb, v_sp, v_sc, g_sb, g_sp, g_sc, dq_sb, dq_sp, dq_sc,
    N, L, STEP, CQ, C,
    MASK_CENTRE: tl.constexpr, HAS_PREV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_CQ: tl.constexpr, BLOCK_KQ: tl.constexpr,
    BLOCK_KV: tl.constexpr, PRECISION: tl.constexpr, DOT: tl.constexpr, GRAD_PRECISION: tl.constexpr,
):
    """``dQ_i = dE K`` along one axis for ``BLOCK_M`` queries of one line and ``BLOCK_CQ`` of the
    query/key channels, looping over the keys ``BLOCK_N`` at a time: ``A = exp(E - lse)``,
    ``dA = dO V^T`` over the value channels in chunks of ``BLOCK_C``, ``dE = A (dA - delta)``."""
    batch, start, block_m, block_cq = _backward_tile(tl.cdiv(L, BLOCK_M), tl.cdiv(CQ, BLOCK_CQ), N, L, STEP)
    i = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    i_ok = i < L
    cq = block_cq * BLOCK_CQ + tl.arange(0, BLOCK_CQ)
    cq_ok = cq < CQ
    lse = tl.load(lse_ptr + batch * N + start + i * STEP, mask=i_ok, other=0.0)
    delta = tl.load(delta_ptr + batch * N + start + i * STEP, mask=i_ok, other=0.0)
    acc = tl.zeros([BLOCK_M, BLOCK_CQ], tl.float32)
    for first in range(0, L, BLOCK_N):
        j = first + tl.arange(0, BLOCK_N)
        j_ok = j < L
        energy = _products(q_ptr, q_sb, q_sp, q_sc, start + i * STEP, i_ok, k_ptr, k_sb, k_sp, k_sc,
                           start + j * STEP, j_ok, batch, CQ, BLOCK_KQ, PRECISION, DOT)  # (BLOCK_M, BLOCK_N)
        keep = i_ok[:, None] & j_ok[None, :]
        if MASK_CENTRE:
            keep = keep & (i[:, None] != j[None, :])
        attention = tl.where(keep, tl.exp(energy - lse[:, None]), 0.0)
        grad_attention = _products(do_ptr, g_sb, g_sp, g_sc, start + i * STEP, i_ok, v_ptr, v_sb, v_sp, v_sc,
                                   start + j * STEP, j_ok, batch, C, BLOCK_KV, PRECISION, DOT)
        grad_energy = attention * (grad_attention - delta[:, None])  # (BLOCK_M, BLOCK_N), float32
        k = _load(k_ptr, batch, start + j * STEP, j_ok, cq, cq_ok, k_sb, k_sp, k_sc)  # (BLOCK_N, BLOCK_CQ)
        acc += tl.dot(grad_energy, k.to(tl.float32), input_precision=GRAD_PRECISION)
    _accumulate(dq_prev_ptr, dq_ptr, acc, batch, start + i * STEP, i_ok, cq, cq_ok, dq_sb, dq_sp, dq_sc, HAS_PREV)
