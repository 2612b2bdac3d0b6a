// A small C ABI over PyTorch's c10d process groups (TCPStore rendezvous, Gloo and, when compiled
// with USE_C10D_NCCL, NCCL), for the Rust side in train/src/dist/ffi.rs.
//
// Tensors cross the boundary as `at::Tensor*` — what tch's `Tensor::as_ptr()` points at. Every
// entry point catches C++ exceptions and returns them as a malloc'ed message (freed with
// fs_dist_error_free), so a failed collective becomes a Rust error instead of an abort.

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int world;
  std::chrono::milliseconds timeout;
};

char* copy_message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

// Runs `body`, turning an exception into `*err` and a non-zero return.
template <typename F>
int guarded(char** err, F body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    // what() would append the C++ backtrace
    *err = copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_message(e.what());
  } catch (...) {
    *err = copy_message("unknown C++ exception");
  }
  return 1;
}

// Waits for `work`, failing when it does not complete within the group's timeout.
void finish(Group* g, const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  if (!work->wait(g->timeout)) {
    throw std::runtime_error(std::string(what) + " did not complete");
  }
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

c10::intrusive_ptr<c10d::Backend> gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                               const std::string& master, int rank, int world,
                                               std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && ifname[0] != '\0') {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(master)) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
}

}  // namespace

extern "C" {

int fs_dist_has_nccl() {
#ifdef USE_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

void fs_dist_error_free(char* err) { std::free(err); }

// A process group of `world` ranks meeting at the TCPStore on master:port (served by rank 0).
// backend: "gloo" or "nccl". Returns NULL and sets *err on failure.
void* fs_dist_group_new(const char* backend, const char* master, int port, int rank, int world,
                        long long timeout_ms, char** err) {
  Group* out = nullptr;
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0;
    opts.numWorkers = world;
    opts.waitWorkers = true;
    opts.timeout = timeout;
    std::string host(master);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(host, opts);
    std::string name(backend);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::PrefixStore>("flipstream/" + name, tcp);
    c10::intrusive_ptr<c10d::Backend> group;
    if (name == "gloo") {
      group = gloo_backend(store, host, rank, world, timeout);
#ifdef USE_C10D_NCCL
    } else if (name == "nccl") {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
#endif
    } else {
      throw std::runtime_error("backend " + name + " is not compiled into this build");
    }
    out = new Group{store, group, rank, world, timeout};
  });
  return out;
}

void fs_dist_group_free(void* group) { delete static_cast<Group*>(group); }

// In place: every rank's `tensor` becomes the element-wise sum over ranks.
int fs_dist_all_reduce_sum(void* group, at::Tensor* tensor, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    finish(g, g->backend->allreduce(tensors, opts), "all-reduce");
  });
}

// `output` ([world * n, ...], contiguous) receives every rank's `input` ([n, ...]) in rank order.
int fs_dist_all_gather(void* group, at::Tensor* output, at::Tensor* input, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    TORCH_CHECK(output->is_contiguous(), "all-gather output must be contiguous");
    TORCH_CHECK(output->size(0) == input->size(0) * g->world,
                "all-gather output has ", output->size(0), " rows, expected ",
                input->size(0) * g->world);
    std::vector<at::Tensor> inputs{input->contiguous()};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (auto& chunk : output->chunk(g->world, 0)) {
      outputs[0].push_back(chunk);
    }
    finish(g, g->backend->allgather(outputs, inputs), "all-gather");
  });
}

// In place: every rank's `tensor` becomes rank `root`'s.
int fs_dist_broadcast(void* group, at::Tensor* tensor, int root, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    finish(g, g->backend->broadcast(tensors, opts), "broadcast");
  });
}

// Returns when every rank has called it (or fails after the group's timeout).
int fs_dist_barrier(void* group, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    finish(g, g->backend->barrier(), "barrier");
  });
}

}  // extern "C"
