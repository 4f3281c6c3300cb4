// The fused AW-convolution's CPU kernel for float32: per sample, the modulation, the im2col and the
// convolution's three matrix products in the CPU's cache, in one library call per chunk of samples.
//
// Python (awconv/ops/fused_cpu.py) makes the gate values q of a chunk with ATen (the head GEMM and
// the sigmoid) in the *tap-major transposed* layout (n, P, C1/g, C2), P = kh * kw or 1, passes the
// weight in the same layout, (T, C1/g, C2) with T = kh * kw, and calls:
//
//   forward_chunk(x (n, C1, H, W), q, weight_taps, offset, geometry, groups, out (n, C2, Ho, Wo))
//     out[s] = conv(x[s], K_s), K_s = weight_taps * (q[s] + offset) (q broadcast over taps if P = 1)
//   backward_chunk(grad_out, x, q, weight_taps, offset, sigmoid, geometry, groups, grad_x, grad_taps)
//     grad_x[s] (if given) = the input's gradient;
//     grad_taps (if given) += sum_s G_s * (q_s + offset), with G_s = dL/dK_s (T, C1/g, C2);
//     q[s] is overwritten by dL/dz' = G_s * weight_taps * (q (1 - q) if sigmoid else 1), summed over
//       the taps where P = 1.
//
// In that layout a sample's kernels K_s^T (T * C1/g rows, C2 columns) are one elementwise pass over
// contiguous memory, and they, the unfolded input and the gradients are operands of the matrix
// products as they lie, in cache (147 KB of kernels at 64 -> 64 3x3), never stored for the batch.
// The matrix products are one register-blocked tile (MR x NR outputs, GCC vector extensions,
// compiled for the build machine by `make install`); operands whose layout does not suit it are
// packed first.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

namespace {

// One vector of LANES floats (unaligned access) and a tile of MR x (2 * LANES) outputs: with AVX-512,
// 8 x 32 in 16 of its 32 registers; otherwise 6 x 16 in 12 of 16 (AVX2, and NEON as pairs).
#ifdef __AVX512F__
constexpr int64_t LANES = 16;
constexpr int64_t MR = 8;
#else
constexpr int64_t LANES = 8;
constexpr int64_t MR = 6;
#endif
typedef float Lanes __attribute__((vector_size(LANES * sizeof(float)), aligned(sizeof(float))));
constexpr int64_t NR = 2 * LANES;  // columns of a tile
constexpr int64_t KC = 256;        // the reduction in blocks of this length (B panels of 16-32 KB)

// Where a tile reads its operands and writes its outputs. A(i, k) is a[i * a_row + k * a_step]: a packed
// panel has a_row = 1 and a_step = MR, a row-major matrix a_row = its leading dimension and a_step = 1.
// B(k, j) is b[k * ldb + j], readable for NR columns. C(i, j) is c[i * c_row + j * c_column].
struct TileView {
  const float* a;
  int64_t a_row, a_step;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t c_row, c_column;
};

// C[i, j] (+)= sum_k A(i, k) B(k, j) for i < m <= MR and j < n <= NR; rows of A past m repeat row m - 1.
void tile(int64_t depth, const TileView& v, int64_t m, int64_t n, bool accumulate) {
  const float* rows[MR];
  for (int64_t i = 0; i < MR; ++i) rows[i] = v.a + std::min(i, m - 1) * v.a_row;
  Lanes low[MR], high[MR];
  for (int64_t i = 0; i < MR; ++i) low[i] = high[i] = Lanes{};
  const float* b = v.b;
  for (int64_t k = 0; k < depth; ++k, b += v.ldb) {
    const Lanes b_low = *reinterpret_cast<const Lanes*>(b);
    const Lanes b_high = *reinterpret_cast<const Lanes*>(b + LANES);
    const int64_t offset = k * v.a_step;
    for (int64_t i = 0; i < MR; ++i) {
      const float value = rows[i][offset];
      low[i] += value * b_low;
      high[i] += value * b_high;
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    float* out = v.c + i * v.c_row;
    if (n == NR && v.c_column == 1) {  // whole rows: two vector stores
      Lanes* lanes = reinterpret_cast<Lanes*>(out);
      lanes[0] = accumulate ? lanes[0] + low[i] : low[i];
      lanes[1] = accumulate ? lanes[1] + high[i] : high[i];
      continue;
    }
    float row[NR];
    std::memcpy(row, &low[i], sizeof(Lanes));
    std::memcpy(row + LANES, &high[i], sizeof(Lanes));
    for (int64_t j = 0; j < n; ++j) out[j * v.c_column] = accumulate ? out[j * v.c_column] + row[j] : row[j];
  }
}

// A matrix operand in memory: element (i, k) at data[i * row_stride + k * column_stride].
struct Strided {
  const float* data;
  int64_t row_stride, column_stride;
  float at(int64_t i, int64_t k) const { return data[i * row_stride + k * column_stride]; }
  bool rows_first() const { return column_stride == 1; }  // the order its packing reads in
};

// The panels one thread's matrix products pack their operands into, reused from call to call.
struct Panels {
  std::vector<float> a, b;
};

// packed[k * width + i] = operand(i0 + i, k0 + k) for i < rows, zero for rows <= i < width: A's panel
// as rows x depth, or (with swapped) B's as depth x rows. Reads along the operand's contiguous side.
void pack(const Strided& operand, bool swapped, int64_t i0, int64_t rows, int64_t k0, int64_t depth,
          int64_t width, float* packed) {
  auto value = [&](int64_t i, int64_t k) { return swapped ? operand.at(k0 + k, i0 + i) : operand.at(i0 + i, k0 + k); };
  if (operand.rows_first() != swapped) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t k = 0; k < depth; ++k) packed[k * width + i] = value(i, k);
    }
  } else {
    for (int64_t k = 0; k < depth; ++k) {
      for (int64_t i = 0; i < rows; ++i) packed[k * width + i] = value(i, k);
    }
  }
  for (int64_t k = 0; k < depth; ++k) std::fill(packed + k * width + rows, packed + (k + 1) * width, 0.0f);
}

// C (m x n; element (i, j) at c[i * c_row + j * c_column]) = A (m x depth) B (depth x n). A row-major
// A and a B whose rows hold whole tiles are read where they lie; other operands are packed first.
void gemm(int64_t m, int64_t n, int64_t depth, const Strided& a, const Strided& b, float* c, int64_t c_row,
          int64_t c_column, Panels& panels) {
  const bool direct_a = a.column_stride == 1;
  const bool direct_b = b.column_stride == 1 && n % NR == 0;
  const int64_t column_tiles = (n + NR - 1) / NR;
  panels.a.resize(KC * MR);
  panels.b.resize(direct_b ? 0 : KC * NR * column_tiles);
  for (int64_t k0 = 0; k0 < depth; k0 += KC) {
    const int64_t block = std::min(KC, depth - k0);
    for (int64_t tile_j = 0; tile_j < column_tiles && !direct_b; ++tile_j) {  // B as [tile][k][NR]
      const int64_t j0 = tile_j * NR;
      pack(b, true, j0, std::min(NR, n - j0), k0, block, NR, panels.b.data() + tile_j * KC * NR);
    }
    for (int64_t i0 = 0; i0 < m; i0 += MR) {
      const int64_t height = std::min(MR, m - i0);
      TileView view{panels.a.data(), 1, MR, nullptr, NR, nullptr, c_row, c_column};
      if (direct_a) {
        view.a = a.data + i0 * a.row_stride + k0, view.a_row = a.row_stride, view.a_step = 1;
      } else {  // A[i0:i0+MR, k0:k0+block] as [k][MR]
        pack(a, false, i0, height, k0, block, MR, panels.a.data());
      }
      for (int64_t tile_j = 0; tile_j < column_tiles; ++tile_j) {
        const int64_t j0 = tile_j * NR;
        view.b = direct_b ? b.data + k0 * b.row_stride + j0 : panels.b.data() + tile_j * KC * NR;
        view.ldb = direct_b ? b.row_stride : NR;
        view.c = c + i0 * c_row + j0 * c_column;
        tile(block, view, height, std::min(NR, n - j0), k0 > 0);
      }
    }
  }
}

struct Problem {
  int64_t channels_in, height, width, channels_out, out_height, out_width;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
  int64_t taps() const { return kh * kw; }
  int64_t pixels() const { return out_height * out_width; }
  int64_t in_per_group() const { return channels_in / groups; }
  int64_t out_per_group() const { return channels_out / groups; }
  int64_t rows() const { return channels_out * in_per_group(); }  // R
};

Problem make_problem(const at::Tensor& x, const at::Tensor& weight_taps, int64_t channels_out,
                     std::vector<int64_t> geometry, int64_t groups) {
  TORCH_CHECK(geometry.size() == 8, "geometry must be (kh, kw, sh, sw, ph, pw, dh, dw)");
  Problem p{x.size(1), x.size(2), x.size(3), channels_out, 0, 0, geometry[0], geometry[1], geometry[2],
            geometry[3], geometry[4], geometry[5], geometry[6], geometry[7], groups};
  p.out_height = (p.height + 2 * p.ph - p.dh * (p.kh - 1) - 1) / p.sh + 1;
  p.out_width = (p.width + 2 * p.pw - p.dw * (p.kw - 1) - 1) / p.sw + 1;
  TORCH_CHECK(weight_taps.numel() == p.rows() * p.taps(), "weight_taps must be (kh * kw, C1/g, C2)");
  return p;
}

// The output columns [first, last) whose input column ox * stride - padding + offset lies in [0, size).
void valid_range(int64_t size, int64_t out_size, int64_t stride, int64_t padding, int64_t offset,
                 int64_t& first, int64_t& last) {
  const int64_t shift = offset - padding;  // input column = ox * stride + shift
  first = shift >= 0 ? 0 : (-shift + stride - 1) / stride;
  last = size - shift <= 0 ? 0 : std::min(out_size, (size - shift - 1) / stride + 1);
  first = std::min(first, last);
}

// cols (C1 * T, L): group g's rows g * C1/g * T + t * C1/g + c hold x[g * C1/g + c] at tap t for every
// output pixel (zero in the padding): the row order of the kernels' tap-major layout.
void im2col(const Problem& p, const float* x, float* cols) {
  const int64_t taps = p.taps(), pixels = p.pixels(), in_group = p.in_per_group();
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t ky = t / p.kw, kx = t % p.kw, shift = kx * p.dw - p.pw;
    int64_t first, last;
    valid_range(p.width, p.out_width, p.sw, p.pw, kx * p.dw, first, last);
    for (int64_t c = 0; c < p.channels_in; ++c) {
      const float* plane = x + c * p.height * p.width;
      float* row = cols + ((c / in_group) * taps * in_group + t * in_group + c % in_group) * pixels;
      for (int64_t oy = 0; oy < p.out_height; ++oy) {
        const int64_t iy = oy * p.sh - p.ph + ky * p.dh;
        float* out = row + oy * p.out_width;
        if (iy < 0 || iy >= p.height) {
          std::fill(out, out + p.out_width, 0.0f);
          continue;
        }
        const float* line = plane + iy * p.width + shift;
        std::fill(out, out + first, 0.0f);
        if (p.sw == 1) {
          std::copy(line + first, line + last, out + first);
        } else {
          for (int64_t ox = first; ox < last; ++ox) out[ox] = line[ox * p.sw];
        }
        std::fill(out + last, out + p.out_width, 0.0f);
      }
    }
  }
}

// grad_x (C1, H, W) = the rows of cols (C1 * T, L, ordered as im2col's) added back onto their pixels.
void col2im(const Problem& p, const float* cols, float* grad_x) {
  const int64_t taps = p.taps(), pixels = p.pixels(), in_group = p.in_per_group();
  std::fill(grad_x, grad_x + p.channels_in * p.height * p.width, 0.0f);
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t ky = t / p.kw, kx = t % p.kw, shift = kx * p.dw - p.pw;
    int64_t first, last;
    valid_range(p.width, p.out_width, p.sw, p.pw, kx * p.dw, first, last);
    for (int64_t c = 0; c < p.channels_in; ++c) {
      float* plane = grad_x + c * p.height * p.width;
      const float* row = cols + ((c / in_group) * taps * in_group + t * in_group + c % in_group) * pixels;
      for (int64_t oy = 0; oy < p.out_height; ++oy) {
        const int64_t iy = oy * p.sh - p.ph + ky * p.dh;
        if (iy < 0 || iy >= p.height) continue;
        float* line = plane + iy * p.width + shift;
        const float* in = row + oy * p.out_width;
        for (int64_t ox = first; ox < last; ++ox) line[ox * p.sw] += in[ox];
      }
    }
  }
}

// kernels (T, C1/g, C2) = weight_taps * (q + offset), q (P, C1/g, C2) broadcast over the taps if P = 1.
void modulate(const Problem& p, const float* q, int64_t gate_taps, const float* weight_taps, float offset,
              float* kernels) {
  const int64_t rows = p.rows();
  for (int64_t t = 0; t < p.taps(); ++t) {
    const float* gates = q + (gate_taps == 1 ? 0 : t * rows);
    const float* weight = weight_taps + t * rows;
    float* out = kernels + t * rows;
    for (int64_t r = 0; r < rows; ++r) out[r] = weight[r] * (gates[r] + offset);
  }
}

// From one sample's G = dL/dK (T, C1/g, C2): adds G * (q + offset) to partial (null: not wanted) and
// writes dL/dz' = G * w * (q (1 - q) if sigmoid else 1) over q (P, C1/g, C2), summed over taps if P = 1.
void gate_gradients(const Problem& p, const float* grad_kernels, const float* weight_taps, float offset,
                    bool sigmoid, int64_t gate_taps, float* q, float* partial) {
  const int64_t rows = p.rows();
  if (gate_taps == 1) {
    std::vector<float> total(rows, 0.0f);
    for (int64_t t = 0; t < p.taps(); ++t) {
      const float* gradient = grad_kernels + t * rows;
      const float* weight = weight_taps + t * rows;
      if (partial != nullptr) {
        for (int64_t r = 0; r < rows; ++r) partial[t * rows + r] += gradient[r] * (q[r] + offset);
      }
      for (int64_t r = 0; r < rows; ++r) total[r] += gradient[r] * weight[r];
    }
    for (int64_t r = 0; r < rows; ++r) q[r] = total[r] * (sigmoid ? q[r] * (1.0f - q[r]) : 1.0f);
    return;
  }
  const int64_t values = p.taps() * rows;
  if (partial != nullptr) {
    for (int64_t i = 0; i < values; ++i) partial[i] += grad_kernels[i] * (q[i] + offset);
  }
  if (sigmoid) {
    for (int64_t i = 0; i < values; ++i) q[i] = grad_kernels[i] * weight_taps[i] * q[i] * (1.0f - q[i]);
  } else {
    for (int64_t i = 0; i < values; ++i) q[i] = grad_kernels[i] * weight_taps[i];
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& q, const at::Tensor& weight_taps) {
  for (const at::Tensor* t : {&x, &q, &weight_taps}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "awconv_cpu takes contiguous float32 CPU tensors");
  }
}

void forward_chunk(const at::Tensor& x, const at::Tensor& q, const at::Tensor& weight_taps, double offset,
                   std::vector<int64_t> geometry, int64_t groups, const at::Tensor& out) {
  check_inputs(x, q, weight_taps);
  TORCH_CHECK(out.is_contiguous() && out.scalar_type() == at::kFloat, "out must be contiguous float32");
  const Problem p = make_problem(x, weight_taps, out.size(1), geometry, groups);
  const int64_t samples = x.size(0), gate_taps = q.size(1), rows = p.rows();
  const int64_t reduction = p.in_per_group() * p.taps(), pixels = p.pixels(), out_group = p.out_per_group();
  const float* x_data = x.data_ptr<float>();
  const float* q_data = q.data_ptr<float>();
  const float* w_data = weight_taps.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  at::parallel_for(0, samples, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kernels(rows * p.taps()), cols(p.channels_in * p.taps() * pixels);
    Panels panels;
    for (int64_t s = begin; s < end; ++s) {
      modulate(p, q_data + s * gate_taps * rows, gate_taps, w_data, static_cast<float>(offset), kernels.data());
      im2col(p, x_data + s * p.channels_in * p.height * p.width, cols.data());
      for (int64_t g = 0; g < p.groups; ++g) {  // out (C2/g, L) = K (C2/g, T * C1/g) cols (T * C1/g, L)
        gemm(out_group, pixels, reduction, Strided{kernels.data() + g * out_group, 1, p.channels_out},
             {cols.data() + g * reduction * pixels, pixels, 1},
             out_data + (s * p.channels_out + g * out_group) * pixels, pixels, 1, panels);
      }
    }
  });
}

void backward_chunk(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& q,
                    const at::Tensor& weight_taps, double offset, bool sigmoid, std::vector<int64_t> geometry,
                    int64_t groups, const std::optional<at::Tensor>& grad_x,
                    const std::optional<at::Tensor>& grad_taps) {
  check_inputs(x, q, weight_taps);
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.scalar_type() == at::kFloat,
              "grad_out must be contiguous float32");
  const Problem p = make_problem(x, weight_taps, grad_out.size(1), geometry, groups);
  const int64_t samples = x.size(0), gate_taps = q.size(1), rows = p.rows(), taps = p.taps();
  const int64_t reduction = p.in_per_group() * taps, pixels = p.pixels(), out_group = p.out_per_group();
  const bool wants_x = grad_x.has_value(), wants_taps = grad_taps.has_value();
  float* grad_x_data = wants_x ? grad_x->data_ptr<float>() : nullptr;
  float* grad_taps_data = wants_taps ? grad_taps->data_ptr<float>() : nullptr;
  const float* grad_out_data = grad_out.data_ptr<float>();
  const float* x_data = x.data_ptr<float>();
  float* q_data = q.data_ptr<float>();
  const float* w_data = weight_taps.data_ptr<float>();
  const float off = static_cast<float>(offset);
  std::mutex taps_lock;
  at::parallel_for(0, samples, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kernels(rows * taps), cols(p.channels_in * taps * pixels);
    std::vector<float> grad_cols(wants_x ? p.channels_in * taps * pixels : 0);
    std::vector<float> grad_kernels(rows * taps);  // G = dL/dK (T, C1/g, C2)
    std::vector<float> partial(wants_taps ? rows * taps : 0, 0.0f);
    Panels panels;
    for (int64_t s = begin; s < end; ++s) {
      float* q_sample = q_data + s * gate_taps * rows;
      const float* grad_sample = grad_out_data + s * p.channels_out * pixels;
      modulate(p, q_sample, gate_taps, w_data, off, kernels.data());
      im2col(p, x_data + s * p.channels_in * p.height * p.width, cols.data());
      for (int64_t g = 0; g < p.groups; ++g) {
        const float* group_grad = grad_sample + g * out_group * pixels;
        const float* group_cols = cols.data() + g * reduction * pixels;
        if (wants_x) {  // columns' gradient (T * C1/g, L) = K^T (T * C1/g, C2/g) grad (C2/g, L)
          gemm(reduction, pixels, out_group, Strided{kernels.data() + g * out_group, p.channels_out, 1},
               {group_grad, pixels, 1}, grad_cols.data() + g * reduction * pixels, pixels, 1, panels);
        }
        // G^T (T * C1/g, C2/g) = cols (T * C1/g, L) grad^T (L, C2/g), into G's layout (T, C1/g, C2)
        gemm(reduction, out_group, pixels, Strided{group_cols, pixels, 1}, {group_grad, 1, pixels},
             grad_kernels.data() + g * out_group, p.channels_out, 1, panels);
      }
      if (wants_x) col2im(p, grad_cols.data(), grad_x_data + s * p.channels_in * p.height * p.width);
      gate_gradients(p, grad_kernels.data(), w_data, off, sigmoid, gate_taps, q_sample,
                     wants_taps ? partial.data() : nullptr);
    }
    if (wants_taps) {
      std::lock_guard<std::mutex> guard(taps_lock);
      for (int64_t i = 0; i < rows * taps; ++i) grad_taps_data[i] += partial[i];
    }
  });
}

}  // namespace

TORCH_LIBRARY(awconv_cpu, m) {
  m.def("forward_chunk", &forward_chunk);
  m.def("backward_chunk", &backward_chunk);
}
