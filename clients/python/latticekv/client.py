# SPDX-License-Identifier: Apache-2.0
"""Client: the latticekv.v1 Codec, KVStore and Admin services with numpy arrays.

Design note. The wire carries bf16, fp16 or fp32 tensors; numpy has no
bfloat16, so bf16 travels as uint16 bit patterns: inputs are rounded to
bf16 here (round to nearest even, as the codec does) when dtype="bf16" is
asked for, and bf16 outputs come back widened to float32, which is exact.
Pass raw=True to a decoding call to get the uint16 bits instead. Arrays keep
their shape; the last dimension is head_dim.

torch tensors go in wherever an array does (torch is never imported unless
one is passed or asked for): a CPU tensor becomes a numpy view of the same
memory (zero-copy; a GPU tensor is copied to the host first), and a bfloat16
tensor travels as its bit patterns, as bf16, without rounding. Any other
object that speaks DLPack (__dlpack__) is taken through numpy.from_dlpack.
Decoding calls return torch tensors with as_torch=True: bf16 comes back as
torch.bfloat16, and the tensor shares memory with the decoded array.
"""

import grpc
import numpy as np

from . import health_pb, pb, pb_grpc

DEFAULT_MAX_MESSAGE = 64 << 20
# Seconds. The same defaults as the C client (lkv_client.h): every call has a
# deadline below gRPC's 20 s connect timeout, so a daemon that stops answering
# ends a call with DEADLINE_EXCEEDED; while calls are in flight a ping goes
# out every KEEPALIVE_TIME and an unanswered one closes the connection
# (UNAVAILABLE) after KEEPALIVE_TIMEOUT. latticekvd accepts a ping per second;
# intervals below KEEPALIVE_MIN are raised to it.
DEFAULT_TIMEOUT = 10.0
KEEPALIVE_TIME = 30.0
KEEPALIVE_TIMEOUT = 10.0
KEEPALIVE_MIN = 2.0

_DTYPES = {"bf16": pb.DTYPE_BF16, "fp16": pb.DTYPE_FP16, "fp32": pb.DTYPE_FP32}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_VARIANTS = {"e8": pb.VARIANT_E8, "d4": pb.VARIANT_D4}


class Error(Exception):
    """A failed call: .code is the grpc.StatusCode, .details the daemon's message."""

    def __init__(self, code, details):
        super().__init__("%s: %s" % (code.name if code is not None else "ERROR", details))
        self.code = code
        self.details = details


def to_bf16_bits(x):
    """float array -> uint16 bf16 bit patterns, round to nearest even."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    # NaN must stay NaN (the rounding carry could turn some into Inf).
    return np.where(np.isnan(f), np.uint16(0x7FC0), rounded).astype(np.uint16)


def from_bf16_bits(b):
    """uint16 bf16 bit patterns -> float32, exactly."""
    u = np.ascontiguousarray(b, dtype=np.uint16).astype(np.uint32) << 16
    return u.view(np.float32)


def _wire_dtype(dtype, arr):
    if dtype is None:
        if arr.dtype == np.float16:
            return pb.DTYPE_FP16
        if arr.dtype == np.float32:
            return pb.DTYPE_FP32
        raise ValueError("array dtype %s: pass dtype='bf16'|'fp16'|'fp32'" % arr.dtype)
    if isinstance(dtype, int):
        return dtype  # a raw wire value, sent as is
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError("dtype=%r: want 'bf16', 'fp16' or 'fp32'" % (dtype,)) from None


def _is_bf16(dtype):
    return dtype in ("bf16", pb.DTYPE_BF16)


def as_numpy(x, dtype=None):
    """(array, dtype) for an input: numpy as is, torch and DLPack objects as a
    numpy view of their memory where they are on the CPU. A bfloat16 torch
    tensor becomes its uint16 bit patterns with dtype 'bf16' (kept exactly)."""
    if isinstance(x, np.ndarray):
        return x, dtype
    if type(x).__module__.split(".")[0] == "torch":
        import torch
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            bits = t.view(torch.int16).numpy().view(np.uint16)
            if dtype is None or _is_bf16(dtype):
                return bits, "bf16"
            return from_bf16_bits(bits), dtype
        return t.numpy(), dtype
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x), dtype
    return np.asarray(x), dtype


def tensor_of(arr, dtype=None):
    """array (numpy, torch, DLPack) -> wire Tensor. A uint16 array with
    dtype='bf16' is taken as bits."""
    arr, dtype = as_numpy(arr, dtype)
    wd = _wire_dtype(dtype, arr)
    if wd == pb.DTYPE_BF16:
        data = arr if arr.dtype == np.uint16 else to_bf16_bits(arr)
    elif wd == pb.DTYPE_FP16:
        data = arr.astype("<f2", copy=False)
    elif wd == pb.DTYPE_FP32:
        data = arr.astype("<f4", copy=False)
    else:
        data = arr
    data = np.ascontiguousarray(data)
    return pb.Tensor(dtype=wd, shape=list(arr.shape), data=data.tobytes())


def array_of(t, raw=False, as_torch=False):
    """wire Tensor -> numpy array (bf16 widened to float32 unless raw), or with
    as_torch a torch tensor (bf16 as torch.bfloat16) sharing its memory."""
    shape = tuple(int(s) for s in t.shape)
    if as_torch:
        import torch
        if t.dtype == pb.DTYPE_BF16:
            bits = np.frombuffer(t.data, dtype="<i2").reshape(shape).copy()
            return torch.from_numpy(bits).view(torch.bfloat16)
        return torch.from_numpy(array_of(t))
    if t.dtype == pb.DTYPE_BF16:
        bits = np.frombuffer(t.data, dtype="<u2").reshape(shape)
        return bits.copy() if raw else from_bf16_bits(bits)
    if t.dtype == pb.DTYPE_FP16:
        return np.frombuffer(t.data, dtype="<f2").reshape(shape).copy()
    if t.dtype == pb.DTYPE_FP32:
        return np.frombuffer(t.data, dtype="<f4").reshape(shape).copy()
    raise Error(None, "reply holds a tensor of unknown dtype %d" % t.dtype)


def _params(variant, q, profile=None):
    """CodecParams. profile: None or 0 = profile 1 (fixed-size records), 1, or
    2 (E8 only, entropy-coded, variable size); other integers are sent as they
    are and the daemon answers INVALID_ARGUMENT naming profile=N."""
    if profile is None:
        prof = 0
    elif isinstance(profile, int) and not isinstance(profile, bool):
        prof = profile
    else:
        raise ValueError("profile=%r: want 1 or 2" % (profile,))
    if variant is None:
        v = pb.VARIANT_UNSPECIFIED
    elif isinstance(variant, int):
        v = variant
    else:
        try:
            v = _VARIANTS[variant.lower()]
        except KeyError:
            raise ValueError("variant=%r: want 'e8' or 'd4'" % (variant,)) from None
    return pb.CodecParams(variant=v, q_range=int(q or 0), profile=prof)


def _key(namespace, key):
    if isinstance(key, str):
        key = key.encode()
    return pb.BlockKey(namespace=namespace, key=bytes(key))


def _out_dtype(out_dtype):
    if out_dtype is None:
        return pb.DTYPE_UNSPECIFIED
    if isinstance(out_dtype, int):
        return out_dtype
    return _DTYPES[out_dtype]


def _pem(x):
    """PEM bytes from bytes, or from a file path (str or os.PathLike)."""
    if x is None or isinstance(x, bytes):
        return x
    with open(x, "rb") as f:
        return f.read()


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds "authorization: Bearer TOKEN" to every call of a channel."""

    def __init__(self, token):
        self._md = ("authorization", "Bearer " + token)

    def __repr__(self):
        return "_Bearer(<token hidden>)"

    def _details(self, d):
        md = list(d.metadata or []) + [self._md]
        return d._replace(metadata=md) if hasattr(d, "_replace") else _CallDetails(d, md)

    def intercept_unary_unary(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_unary_stream(self, cont, d, req):
        return cont(self._details(d), req)

    def intercept_stream_unary(self, cont, d, reqs):
        return cont(self._details(d), reqs)

    def intercept_stream_stream(self, cont, d, reqs):
        return cont(self._details(d), reqs)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method, self.timeout, self.credentials = d.method, d.timeout, d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)
        self.metadata = metadata


def channel_options(max_message_bytes=DEFAULT_MAX_MESSAGE, keepalive=KEEPALIVE_TIME,
                    keepalive_timeout=KEEPALIVE_TIMEOUT):
    """The gRPC channel options of Client and AsyncClient."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if keepalive:
        # Pings only while calls are in flight, with no cap on pings
        # between data frames, so a call that waits long keeps probing.
        options += [
            ("grpc.keepalive_time_ms", int(max(keepalive, KEEPALIVE_MIN) * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    return options


class ChannelConfig:
    """The connection arguments of Client and AsyncClient, checked once:
    .options (gRPC channel options), .creds (TLS channel credentials, or None
    for plaintext) and .metadata (the bearer token's call metadata, or None).
    A ValueError names the argument that is wrong; the token is never shown."""

    def __init__(self, max_message_bytes=DEFAULT_MAX_MESSAGE, keepalive=KEEPALIVE_TIME,
                 keepalive_timeout=KEEPALIVE_TIMEOUT, tls_ca=None, tls_cert=None, tls_key=None,
                 tls_server_name=None, token=None):
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together (mutual TLS needs both)")
        if tls_cert is not None and tls_ca is None:
            raise ValueError("tls_cert needs tls_ca (mutual TLS is TLS)")
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("token must be non-empty and without whitespace")
        self.options = channel_options(max_message_bytes, keepalive, keepalive_timeout)
        if tls_server_name:
            self.options.append(("grpc.ssl_target_name_override", tls_server_name))
        self.creds = None
        if tls_ca is not None:
            self.creds = grpc.ssl_channel_credentials(root_certificates=_pem(tls_ca),
                                                      private_key=_pem(tls_key),
                                                      certificate_chain=_pem(tls_cert))
        self.metadata = None if token is None else (("authorization", "Bearer " + token),)

    def __repr__(self):
        return "ChannelConfig(tls=%s, token=%s)" % (self.creds is not None,
                                                    "<hidden>" if self.metadata else None)


class Client:
    """A channel to one latticekvd ("host:port" or "unix:PATH").

    Thread-safe (grpcio channels are).
    timeout: the deadline of each call in seconds (default 10; a stream call
      has one deadline for the whole stream); None = no deadline. A call's own
      timeout= argument, where it has one, overrides it.
    keepalive: seconds between keepalive pings while calls are in flight
      (default 30, at least 2); None or 0 = no pings. keepalive_timeout: seconds an
      unanswered ping may take before the connection is closed and its calls
      fail with UNAVAILABLE (default 10).
    tls_ca: PEM CA certificates (bytes or a file path) that sign the daemon's
      certificate: the channel is TLS (a TCP address only). tls_cert, tls_key:
      this client's certificate and key for mutual TLS (both or neither).
      tls_server_name: the name checked against the daemon's certificate when
      it differs from the address's host.
    token: a bearer token sent as "authorization: Bearer TOKEN" with every
      call (the daemon's --auth-tokens); it is never shown in repr or errors.
    The raw stubs are there too: .codec, .kv, .admin (request messages in
    latticekv.pb) for callers that want the wire API itself.
    """

    def __init__(self, addr, max_message_bytes=DEFAULT_MAX_MESSAGE, timeout=DEFAULT_TIMEOUT,
                 keepalive=KEEPALIVE_TIME, keepalive_timeout=KEEPALIVE_TIMEOUT,
                 tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None, token=None):
        self.addr = addr
        self.timeout = timeout
        cfg = ChannelConfig(max_message_bytes, keepalive, keepalive_timeout, tls_ca, tls_cert,
                            tls_key, tls_server_name, token)
        if cfg.creds is not None:
            self._raw_channel = grpc.secure_channel(addr, cfg.creds, options=cfg.options)
        else:
            self._raw_channel = grpc.insecure_channel(addr, options=cfg.options)
        self.channel = self._raw_channel
        if token is not None:
            self.channel = grpc.intercept_channel(self._raw_channel, _Bearer(token))
        self.codec = pb_grpc.CodecStub(self.channel)
        self.kv = pb_grpc.KVStoreStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self._health = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb.HealthCheckResponse.FromString)

    def close(self):
        self._raw_channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, fn, req, timeout=None):
        try:
            return fn(req, timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as e:
            raise Error(e.code(), e.details()) from None

    # -- health ------------------------------------------------------------
    def health(self, service="", timeout=None):
        """'SERVING', 'NOT_SERVING', 'UNKNOWN' or 'SERVICE_UNKNOWN'."""
        r = self._call(self._health, health_pb.HealthCheckRequest(service=service), timeout)
        return health_pb.HealthCheckResponse.ServingStatus.Name(r.status)

    def wait_ready(self, timeout=10.0):
        """Blocks until the daemon reports SERVING; raises Error on timeout."""
        import time
        end = time.monotonic() + timeout
        last = None
        while True:
            try:
                if self.health(timeout=0.5) == "SERVING":
                    return
            except Error as e:
                last = e
            if time.monotonic() >= end:
                raise last or Error(grpc.StatusCode.UNAVAILABLE, "%s is not SERVING" % self.addr)
            time.sleep(0.02)

    # -- Codec -------------------------------------------------------------
    def compress(self, arr, dtype=None, variant=None, q=None, info=False, profile=None):
        """Encodes arr; returns the container bytes (and the reply when info=True)."""
        r = self._call(self.codec.Compress, pb.CompressRequest(
            tensor=tensor_of(arr, dtype), params=_params(variant, q, profile)))
        return (r.coded, r) if info else r.coded

    def decompress(self, coded, out_dtype=None, raw=False, as_torch=False):
        r = self._call(self.codec.Decompress, pb.DecompressRequest(
            coded=bytes(coded), out_dtype=_out_dtype(out_dtype)))
        return array_of(r.tensor, raw, as_torch)

    # -- KVStore -----------------------------------------------------------
    def put(self, key, arr, dtype=None, variant=None, q=None, namespace="", profile=None):
        """Stores arr under key (the daemon encodes it); returns the coded size.
        profile=2 selects codec profile 2 (E8 only, variable size); Get decodes
        either profile, as the stored container names it."""
        r = self._call(self.kv.Put, pb.PutRequest(
            key=_key(namespace, key), tensor=tensor_of(arr, dtype),
            params=_params(variant, q, profile)))
        return r.coded_bytes

    def put_coded(self, key, coded, namespace=""):
        """Stores a container made by this codec as is (the daemon verifies it)."""
        r = self._call(self.kv.Put, pb.PutRequest(key=_key(namespace, key), coded=bytes(coded)))
        return r.coded_bytes

    def get(self, key, out_dtype=None, namespace="", raw=False, want_coded=False, tier=False,
            as_torch=False):
        """The block under key: an array, or the container bytes with want_coded.
        With tier=True returns (value, tier name)."""
        r = self._call(self.kv.Get, pb.GetRequest(
            key=_key(namespace, key), want_coded=want_coded, out_dtype=_out_dtype(out_dtype)))
        which = r.WhichOneof("payload")
        if which == "coded":
            value = r.coded
        elif which == "tensor":
            value = array_of(r.tensor, raw, as_torch)
        else:
            raise Error(None, "Get replied with no payload")
        return (value, r.tier) if tier else value

    def lookup(self, keys, namespace=""):
        """(prefix_hits, [True/False per key]): e.g. (1, [True, False]) when only the
        first of two keys is stored. prefix_hits counts the keys from the start
        that are all present."""
        ks = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        r = self._call(self.kv.Lookup, pb.LookupRequest(namespace=namespace, keys=ks))
        return r.prefix_hits, list(r.present)

    def delete(self, key, namespace=""):
        """True when the key existed."""
        return self._call(self.kv.Delete, pb.DeleteRequest(key=_key(namespace, key))).deleted

    # -- Streams: many blocks over one call, replies in request order -------
    def _stream(self, fn, reqs):
        try:
            return list(fn(iter(reqs), timeout=self.timeout))
        except grpc.RpcError as e:
            raise Error(e.code(), e.details()) from None

    def compress_many(self, arrays, dtype=None, variant=None, q=None, profile=None):
        """Codec/CompressStream: a list of containers, one per array, in order."""
        params = _params(variant, q, profile)
        reqs = [pb.CompressRequest(tensor=tensor_of(a, dtype), params=params) for a in arrays]
        return [r.coded for r in self._stream(self.codec.CompressStream, reqs)]

    def put_many(self, items, dtype=None, variant=None, q=None, namespace="", profile=None):
        """KVStore/PutStream of (key, array) pairs; returns the coded sizes in order.
        On a failure, blocks before the failing one are stored; Error is raised.
        If the call is cut off on this side (timeout, cancel, lost connection) the
        daemon may have stored more blocks than replies arrived, but always a prefix
        of items: lookup([k for k, _ in items]) afterwards; its prefix_hits is how
        many were stored (for keys absent before)."""
        params = _params(variant, q, profile)
        reqs = [pb.PutRequest(key=_key(namespace, k), tensor=tensor_of(a, dtype), params=params)
                for k, a in items]
        return [r.coded_bytes for r in self._stream(self.kv.PutStream, reqs)]

    def put_coded_many(self, items, namespace=""):
        """KVStore/PutStream of (key, container) pairs, each stored as is (the
        daemon verifies it); returns the coded sizes in order. On a failure the
        blocks before the failing one are stored and Error is raised."""
        reqs = [pb.PutRequest(key=_key(namespace, k), coded=bytes(c)) for k, c in items]
        return [r.coded_bytes for r in self._stream(self.kv.PutStream, reqs)]

    def get_many(self, keys, out_dtype=None, namespace="", raw=False, want_coded=False,
                 as_torch=False):
        """KVStore/GetStream: arrays (or containers with want_coded) in key order."""
        reqs = [pb.GetRequest(key=_key(namespace, k), want_coded=want_coded,
                              out_dtype=_out_dtype(out_dtype)) for k in keys]
        out = []
        for r in self._stream(self.kv.GetStream, reqs):
            out.append(r.coded if r.WhichOneof("payload") == "coded"
                       else array_of(r.tensor, raw, as_torch))
        return out

    # -- Copy between daemons (client relay) ----------------------------------
    def copy_to(self, dest, keys, namespace="", progress=None, batch=16):
        """Copies the coded blocks of keys from this daemon to dest (a Client of
        another daemon): each block is read as its container (Get want_coded)
        and stored on dest as is (Put coded), so only coded bytes travel and
        dest verifies every container (checksums) without re-encoding; a
        damaged one is DATA_LOSS there and nothing is stored for it.

        This is a relay through the caller, a batch in flight at a time; push
        and pull below make the daemons move the blocks between themselves.

        Returns one (key, code, details, coded_bytes) per key, in order: code
        is grpc.StatusCode.OK when the key arrived, else the code of the side
        that refused it (NOT_FOUND on this daemon, RESOURCE_EXHAUSTED naming
        the namespace on dest, ...). A key is stored on dest only when its code
        is OK. Raises Error for bad input (no keys). progress(done, total, bytes),
        if given, is called after each key. Blocks are read batch at a time
        and written batch at a time (one PutStream), so at most batch containers
        are held here. dest needs put_coded and put_coded_many."""
        ks = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        if not ks:
            raise Error(grpc.StatusCode.INVALID_ARGUMENT, "copy_to: keys is empty")
        if batch < 1:
            raise Error(grpc.StatusCode.INVALID_ARGUMENT, "copy_to: batch=%r is not >= 1" % batch)
        out, moved = [], 0
        for start in range(0, len(ks), batch):
            part = ks[start:start + batch]
            # One GetStream per batch saves a round trip per block; a batch
            # with a key that fails is read again key by key, so each key
            # gets its own result.
            try:
                got = self.get_many(part, namespace=namespace, want_coded=True)
            except Error:
                got = [None] * len(part)
            if None not in got:
                # The fast path: the batch in one PutStream. It stores a prefix
                # of the batch even when it fails; the batch is then sent
                # again key by key (a Put of the same bytes replaces them), so
                # each key gets its own result.
                try:
                    sizes = dest.put_coded_many(list(zip(part, got)), namespace=namespace)
                except Error:
                    sizes = None
                if sizes is not None:
                    for j, k in enumerate(part):
                        out.append((k, grpc.StatusCode.OK, "", sizes[j]))
                        moved += sizes[j]
                        if progress is not None:
                            progress(start + j + 1, len(ks), moved)
                    continue
            for j, k in enumerate(part):
                try:
                    coded = got[j]
                    if coded is None:
                        coded = self.get(k, namespace=namespace, want_coded=True)
                    n = dest.put_coded(k, coded, namespace=namespace)
                    out.append((k, grpc.StatusCode.OK, "", n))
                    moved += n
                except Error as e:
                    out.append((k, e.code, e.details, 0))
                if progress is not None:
                    progress(start + j + 1, len(ks), moved)
        return out

    # -- Daemon to daemon (Push, Pull) -------------------------------------
    def push(self, to, keys=None, namespace="", prefix=None, timeout=None):
        """Asks this daemon to send the coded blocks of keys (or, with prefix
        given and no keys, every block of namespace in its host memory whose
        key starts with prefix; b"" = all) to the daemon at address `to`
        (host:port or unix:PATH, plaintext). Only containers cross; the
        receiver verifies and stores each one without re-encoding.

        Returns one (key, code, details, coded_bytes) per key, as copy_to:
        code is grpc.StatusCode.OK when the key is stored on `to`, else why
        not (NOT_FOUND here, DATA_LOSS for a damaged block, RESOURCE_EXHAUSTED
        for the receiver's quota, UNAVAILABLE when the link failed). Raises
        Error for a request the daemon refuses as a whole (bad address,
        namespace or keys)."""
        return _transfer_results(self._call(self.kv.Push, _push_request(to, keys, namespace, prefix),
                                            timeout))

    def pull(self, from_addr, keys, namespace="", timeout=None):
        """Asks this daemon to fetch the coded blocks of keys from the daemon
        at from_addr and store them (verified, not re-encoded). Results as
        push."""
        return _transfer_results(self._call(self.kv.Pull, _pull_request(from_addr, keys, namespace),
                                            timeout))

    # -- Admin -------------------------------------------------------------
    def stats(self):
        """The daemon's counters as a dict: numbers as int, tiers as a list of dicts."""
        return _as_dict(self._call(self.admin.Stats, pb.StatsRequest()))


def _bytes_of(k):
    return k.encode() if isinstance(k, str) else bytes(k)


def _push_request(to, keys, namespace, prefix):
    req = pb.PushRequest(namespace=namespace, to=to)
    if keys is not None:
        req.keys.extend(_bytes_of(k) for k in keys)
    if prefix is not None:
        req.by_prefix = True
        req.key_prefix = _bytes_of(prefix)
    return req


def _pull_request(from_addr, keys, namespace):
    req = pb.PullRequest(namespace=namespace, keys=[_bytes_of(k) for k in keys])
    setattr(req, "from", from_addr)  # `from` is a Python keyword
    return req


def _transfer_results(r):
    """A PushResponse or PullResponse as (key, code, details, coded_bytes) tuples."""
    return [(x.key, _CODE_BY_VALUE.get(x.code, grpc.StatusCode.UNKNOWN), x.message, x.coded_bytes)
            for x in r.results]


_CODE_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def _as_dict(msg):
    """A message as a dict of its fields (absent ones at their defaults),
    keeping integers as int: protobuf's MessageToDict turns 64-bit integers
    into strings, as JSON requires, which a Python caller should not see."""
    out = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        is_msg = f.type == f.TYPE_MESSAGE
        if f.label == f.LABEL_REPEATED:
            out[f.name] = [_as_dict(x) if is_msg else x for x in v]
        else:
            out[f.name] = _as_dict(v) if is_msg else v
    return out


__all__ = ["Client", "ChannelConfig", "Error", "tensor_of", "array_of", "as_numpy", "channel_options",
           "to_bf16_bits", "from_bf16_bits",
           "_DTYPE_NAMES", "DEFAULT_TIMEOUT", "KEEPALIVE_TIME", "KEEPALIVE_TIMEOUT"]
