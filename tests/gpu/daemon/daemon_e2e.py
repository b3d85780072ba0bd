# SPDX-License-Identifier: Apache-2.0
"""daemon_e2e.py - latticekvd on the CUDA backend against latticekvd on the
CPU backend, over gRPC, byte for byte.

Usage: python3 daemon_e2e.py CPU_ADDR CUDA_ADDR STUB_DIR

Checks: the second daemon reports the cuda backend and is healthy; Compress
gives the same container bytes on both for every dtype, both variants,
several Q and shapes (including 1 vector and 256 tokens x 8 heads);
each daemon decompresses the other's containers to the same bytes; a
Put/Get on the GPU daemon returns the CPU roundtrip; a NaN is rejected
with the same code and message on both and a failed Put keeps the old
block; 32 concurrent clients (batches across requests) all read back what
they wrote. Prints "e2e: N passed, M failed"; exit 1 on any failure.
"""
import sys
import threading
import time

sys.path.insert(0, sys.argv[3])
import grpc  # noqa: E402
import numpy as np  # noqa: E402
import health_pb2 as hpb  # noqa: E402
import health_pb2_grpc as hpbg  # noqa: E402
from latticekv.v1 import latticekv_pb2 as pb  # noqa: E402
from latticekv.v1 import latticekv_pb2_grpc as pbg  # noqa: E402

OPTS = [("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 256 << 20)]


class Daemon:
    def __init__(self, addr):
        ch = grpc.insecure_channel(addr, options=OPTS)
        grpc.channel_ready_future(ch).result(timeout=20)
        self.codec = pbg.CodecStub(ch)
        self.kv = pbg.KVStoreStub(ch)
        self.admin = pbg.AdminStub(ch)
        self.health = hpbg.HealthStub(ch)


passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def encode(x, dt):
    if dt == pb.DTYPE_FP32:
        return x.astype(np.float32).tobytes()
    if dt == pb.DTYPE_FP16:
        return x.astype(np.float16).tobytes()
    u = x.astype(np.float32).view(np.uint32)  # bf16, round to nearest even
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def error_of(call, req):
    try:
        call(req)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name + ": " + e.details()


cpu, gpu = Daemon(sys.argv[1]), Daemon(sys.argv[2])
backends = (cpu.admin.Stats(pb.StatsRequest()).backend, gpu.admin.Stats(pb.StatsRequest()).backend)
print("backends", *backends)
check(backends == ("cpu", "cuda"), "backends are cpu and cuda")
check(gpu.health.Check(hpb.HealthCheckRequest()).status == hpb.HealthCheckResponse.SERVING,
      "the cuda daemon is serving")

rng = np.random.default_rng(7)
cases = 0
for dt in (pb.DTYPE_BF16, pb.DTYPE_FP16, pb.DTYPE_FP32):
    for var, qs in ((pb.VARIANT_E8, (10, 38, 152)), (pb.VARIANT_D4, (38,))):
        for q in qs:
            for shape in ((1, 8, 128), (16, 8, 128), (256, 8, 128), (33, 64), (7, 256)):
                x = rng.standard_normal(shape) * np.exp(rng.standard_normal(shape[-1]) * 0.5)
                t = pb.Tensor(dtype=dt, shape=list(shape), data=encode(x, dt))
                prm = pb.CodecParams(variant=var, q_range=q)
                rc = cpu.codec.Compress(pb.CompressRequest(tensor=t, params=prm))
                rg = gpu.codec.Compress(pb.CompressRequest(tensor=t, params=prm))
                what = f"dtype {dt} variant {var} Q {q} shape {shape}"
                check(rc.coded == rg.coded, "compress bytes, " + what)
                dc = cpu.codec.Decompress(pb.DecompressRequest(coded=rg.coded))
                dg = gpu.codec.Decompress(pb.DecompressRequest(coded=rc.coded))
                check(dc.tensor.data == dg.tensor.data, "decompress bytes, " + what)
                cases += 1
print("codec cases", cases)

x = rng.standard_normal((64, 8, 128))
t = pb.Tensor(dtype=pb.DTYPE_BF16, shape=[64, 8, 128], data=encode(x, pb.DTYPE_BF16))
key = pb.BlockKey(namespace="e2e", key=b"k")
gpu.kv.Put(pb.PutRequest(key=key, tensor=t))
ref = cpu.codec.Decompress(pb.DecompressRequest(
    coded=cpu.codec.Compress(pb.CompressRequest(tensor=t)).coded)).tensor.data
check(gpu.kv.Get(pb.GetRequest(key=key)).tensor.data == ref, "cuda Put/Get = CPU roundtrip")

nan = np.zeros((2, 128), np.float32)
nan[1, 3] = np.nan
bad = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[2, 128], data=nan.tobytes())
errs = [error_of(d.codec.Compress, pb.CompressRequest(tensor=bad)) for d in (cpu, gpu)]
print("NaN ->", errs[1])
check(errs[0] == errs[1] and errs[0] != "OK", "NaN: the same error on both (%s / %s)" % tuple(errs))
check(error_of(gpu.kv.Put, pb.PutRequest(key=key, tensor=bad)) != "OK" and
      gpu.kv.Get(pb.GetRequest(key=key)).tensor.data == ref, "a failed Put keeps the old block")

problems = []


def client(i):
    try:
        k = pb.BlockKey(namespace="c", key=b"%d" % i)
        for _ in range(20):
            gpu.kv.Put(pb.PutRequest(key=k, tensor=t))
            if gpu.kv.Get(pb.GetRequest(key=k)).tensor.data != ref:
                problems.append(i)
    except grpc.RpcError as e:
        problems.append(e.code().name)


threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
t0 = time.time()
for th in threads:
    th.start()
for th in threads:
    th.join()
check(not problems, "32 concurrent clients: %s" % problems[:3])
print("32 clients x 20 Put+Get: %.2f s" % (time.time() - t0))
st = gpu.admin.Stats(pb.StatsRequest())
print("cuda daemon: requests %d errors %d batches %d batched_vectors %d"
      % (st.requests, st.errors, st.batches, st.batched_vectors))
print("e2e: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
