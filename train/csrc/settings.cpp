// libtorch's global numerics settings that tch does not expose, as a C ABI for
// train/src/device.rs. Exceptions become a non-zero return, never an abort.

#include <ATen/Context.h>

extern "C" {

// TF32 tensor-core math for float32 matmuls and convolutions on CUDA (PyTorch's
// torch.backends.cuda.matmul.allow_tf32 / torch.backends.cudnn.allow_tf32): on = 1, off = 0.
// Returns 0 on success.
int fs_torch_set_tf32(int on) {
  try {
    at::globalContext().setFloat32MatmulPrecision(on != 0 ? "high" : "highest");
    at::globalContext().setAllowTF32CuDNN(on != 0);
    return 0;
  } catch (...) {
    return 1;
  }
}

}  // extern "C"
