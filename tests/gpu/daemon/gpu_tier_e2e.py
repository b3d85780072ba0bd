# SPDX-License-Identifier: Apache-2.0
"""gpu_tier_e2e.py - latticekvd's GPU tier (--gpu-mem-bytes) over gRPC,
against a --backend cpu daemon, byte for byte.

Usage: python3 gpu_tier_e2e.py CPU_ADDR GPU_TIER_ADDR STUB_DIR GPU_MEM_BYTES

The second daemon runs --backend cuda --gpu-mem-bytes GPU_MEM_BYTES (small,
so a few dozen 16-token blocks fill it). Checks: Stats lists the tiers gpu,
host; a Put block is served by the gpu tier and its decoded bytes (bf16 and
out_dtype fp32) equal the cpu daemon's roundtrip; its coded bytes equal the
cpu daemon's Compress; filling the tier evicts the oldest blocks into host
(tier "host", same bytes); a Get promotes such a block back (tier "gpu",
same decoded and coded bytes: GPU -> host -> GPU kept every byte); a block
that went GPU -> host -> peer -> GPU (evicted into host, pushed to the cpu
daemon with KVStore/Push, deleted here, pulled back with KVStore/Pull into
the gpu tier) keeps every byte; a block larger than the tier lives in host;
Delete removes a gpu-resident block.
Prints "gpu tier e2e: N passed, M failed"; exit 1 on any failure.
"""
import sys

sys.path.insert(0, sys.argv[3])
import grpc  # noqa: E402
import numpy as np  # noqa: E402
from latticekv.v1 import latticekv_pb2 as pb  # noqa: E402
from latticekv.v1 import latticekv_pb2_grpc as pbg  # noqa: E402

OPTS = [("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 256 << 20)]
GPU_MEM = int(sys.argv[4])


class Daemon:
    def __init__(self, addr):
        ch = grpc.insecure_channel(addr, options=OPTS)
        grpc.channel_ready_future(ch).result(timeout=20)
        self.codec = pbg.CodecStub(ch)
        self.kv = pbg.KVStoreStub(ch)
        self.admin = pbg.AdminStub(ch)


passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def bf16(x):
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


cpu, gpu = Daemon(sys.argv[1]), Daemon(sys.argv[2])
st = gpu.admin.Stats(pb.StatsRequest())
names = [t.name for t in st.tiers]
print("backend", st.backend, "tiers", names)
check(st.backend == "cuda" and names[:2] == ["gpu", "host"], "tiers gpu, host on cuda: %s" % names)

rng = np.random.default_rng(12)
NS = "gt"
blocks = {}  # key -> (tensor, cpu coded, cpu decoded bf16, cpu decoded fp32)


def make(key, tokens=16):
    x = rng.standard_normal((tokens, 8, 128)) * np.exp(rng.standard_normal(128) * 0.5)
    t = pb.Tensor(dtype=pb.DTYPE_BF16, shape=[tokens, 8, 128], data=bf16(x))
    coded = cpu.codec.Compress(pb.CompressRequest(tensor=t)).coded
    dec = cpu.codec.Decompress(pb.DecompressRequest(coded=coded)).tensor.data
    dec32 = cpu.codec.Decompress(pb.DecompressRequest(coded=coded,
                                                      out_dtype=pb.DTYPE_FP32)).tensor.data
    blocks[key] = (t, coded, dec, dec32)
    gpu.kv.Put(pb.PutRequest(key=pb.BlockKey(namespace=NS, key=key), tensor=t))


def get(key, **kw):
    return gpu.kv.Get(pb.GetRequest(key=pb.BlockKey(namespace=NS, key=key), **kw))


def tier_stats(name):
    for t in gpu.admin.Stats(pb.StatsRequest()).tiers:
        if t.name == name:
            return t
    return None


make(b"k0")
r = get(b"k0")
check(r.tier == "gpu", "a Put block is served by the gpu tier (got %r)" % r.tier)
check(r.tensor.data == blocks[b"k0"][2], "gpu tier Get = cpu roundtrip (bf16)")
r = get(b"k0", out_dtype=pb.DTYPE_FP32)
check(r.tier == "gpu" and r.tensor.data == blocks[b"k0"][3], "gpu tier Get = cpu roundtrip (fp32)")
r = get(b"k0", want_coded=True)
check(r.tier == "gpu" and r.coded == blocks[b"k0"][1], "gpu tier coded Get = cpu Compress bytes")

per_block = len(blocks[b"k0"][1])
fill = GPU_MEM // per_block + 8
for i in range(1, fill):
    make(b"k%d" % i)
g = tier_stats("gpu")
print("gpu tier: blocks %d used %d of %d evictions %d" % (g.blocks, g.used_bytes,
                                                           g.capacity_bytes, g.evictions))
check(g.evictions > 0 and g.used_bytes <= g.capacity_bytes, "filling the gpu tier evicts")
r = get(b"k1")
check(r.tier == "host", "the oldest block went down into host (got %r)" % r.tier)
check(r.tensor.data == blocks[b"k1"][2], "host tier Get after eviction = cpu roundtrip")
r = get(b"k1")
check(r.tier == "gpu", "a host hit is promoted back to the gpu tier (got %r)" % r.tier)
check(r.tensor.data == blocks[b"k1"][2], "promoted block decodes to the cpu roundtrip")
r = get(b"k1", want_coded=True)
check(r.coded == blocks[b"k1"][1], "GPU -> host -> GPU: coded bytes identical")

# GPU -> host -> peer -> GPU: k2 was evicted into host by the fill (k0, k1,
# k2 were the oldest; only k1 came back). Push it to the cpu daemon, drop it
# here, Pull it back: it lands in the gpu tier again, every byte the same.
key = b"k2"
pr = gpu.kv.Push(pb.PushRequest(namespace=NS, keys=[key], to=sys.argv[1]))
check(pr.stored == 1 and pr.results[0].code == 0, "Push gpu daemon -> cpu daemon: %s" % pr)
r = cpu.kv.Get(pb.GetRequest(key=pb.BlockKey(namespace=NS, key=key), want_coded=True))
check(r.coded == blocks[key][1], "the peer holds the same coded bytes")
gpu.kv.Delete(pb.DeleteRequest(key=pb.BlockKey(namespace=NS, key=key)))
pl = gpu.kv.Pull(pb.PullRequest(namespace=NS, keys=[key], **{"from": sys.argv[1]}))
check(pl.stored == 1 and pl.results[0].code == 0, "Pull cpu daemon -> gpu daemon: %s" % pl)
r = get(key, want_coded=True)
check(r.tier == "gpu" and r.coded == blocks[key][1],
      "GPU -> host -> peer -> GPU: coded bytes identical, on the gpu tier (got %r)" % r.tier)
r = get(key)
check(r.tensor.data == blocks[key][2], "GPU -> host -> peer -> GPU: decodes to the cpu roundtrip")

recent = b"k%d" % (fill - 1)
r = get(recent)
check(r.tier == "gpu" and r.tensor.data == blocks[recent][2], "the newest block is still on gpu")

big_tokens = max(32, (GPU_MEM // per_block + 4) * 16)
make(b"big", big_tokens)
r = get(b"big")
check(r.tier == "host" and r.tensor.data == blocks[b"big"][2],
      "a block larger than the gpu tier lives in host (got %r)" % r.tier)

d = gpu.kv.Delete(pb.DeleteRequest(key=pb.BlockKey(namespace=NS, key=recent)))
check(d.deleted, "delete of a gpu-resident block")
try:
    get(recent)
    check(False, "a deleted block is gone")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.NOT_FOUND, "a deleted block is NOT_FOUND")

g = tier_stats("gpu")
print("gpu tier: hits %d misses %d evictions %d errors %d" % (g.hits, g.misses, g.evictions,
                                                              g.errors))
check(g.errors == 0, "no gpu tier errors")
print("gpu tier e2e: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
