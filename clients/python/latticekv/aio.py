# SPDX-License-Identifier: Apache-2.0
"""AsyncClient: the Client's calls as coroutines, on grpc.aio.

    import asyncio, numpy as np, latticekv
    async def main():
        async with latticekv.AsyncClient("127.0.0.1:50051") as kv:
            await kv.put(b"prefix-hash", np.random.randn(16, 8, 128).astype(np.float32))
            x = await kv.get(b"prefix-hash")
    asyncio.run(main())

Design note. The arguments, defaults, conversions (numpy, torch, bf16) and
errors are the blocking Client's (client.py): requests are built and replies
read by the same helpers, so only the calling differs. A stream call
(put_many, get_many, compress_many) sends its requests from an iterator while
the replies are read, all on one call with one deadline. An AsyncClient
belongs to the event loop it was created on; create it inside a coroutine.

TLS and the bearer token are checked and built by client.ChannelConfig, as
for Client. The token travels as call metadata that _call and _stream add to
every call (every RPC goes through them), rather than through a grpc.aio
interceptor: one place, and the same header the blocking Client's
interceptor sends.
"""

import grpc
from grpc import aio

from . import health_pb, pb, pb_grpc
from .client import (DEFAULT_MAX_MESSAGE, DEFAULT_TIMEOUT, KEEPALIVE_TIME, KEEPALIVE_TIMEOUT,
                     ChannelConfig, Error, _as_dict, _key, _out_dtype, _params, _pull_request,
                     _push_request, _transfer_results, array_of, tensor_of)


class AsyncClient:
    """A grpc.aio channel to one latticekvd ("host:port" or "unix:PATH").

    The constructor's arguments mean what they mean for Client, TLS (tls_ca,
    tls_cert, tls_key, tls_server_name) and the bearer token included.
    """

    def __init__(self, addr, max_message_bytes=DEFAULT_MAX_MESSAGE, timeout=DEFAULT_TIMEOUT,
                 keepalive=KEEPALIVE_TIME, keepalive_timeout=KEEPALIVE_TIMEOUT,
                 tls_ca=None, tls_cert=None, tls_key=None, tls_server_name=None, token=None):
        self.addr = addr
        self.timeout = timeout
        cfg = ChannelConfig(max_message_bytes, keepalive, keepalive_timeout, tls_ca, tls_cert,
                            tls_key, tls_server_name, token)
        self._metadata = cfg.metadata
        if cfg.creds is not None:
            self.channel = aio.secure_channel(addr, cfg.creds, options=cfg.options)
        else:
            self.channel = aio.insecure_channel(addr, options=cfg.options)
        self.codec = pb_grpc.CodecStub(self.channel)
        self.kv = pb_grpc.KVStoreStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self._health = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb.HealthCheckResponse.FromString)

    async def close(self):
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _call(self, fn, req, timeout=None):
        try:
            return await fn(req, timeout=timeout if timeout is not None else self.timeout,
                            metadata=self._metadata)
        except grpc.RpcError as e:
            raise Error(e.code(), e.details()) from None

    async def _stream(self, fn, reqs):
        try:
            return [r async for r in fn(iter(reqs), timeout=self.timeout,
                                        metadata=self._metadata)]
        except grpc.RpcError as e:
            raise Error(e.code(), e.details()) from None

    # -- health ------------------------------------------------------------
    async def health(self, service="", timeout=None):
        """'SERVING', 'NOT_SERVING', 'UNKNOWN' or 'SERVICE_UNKNOWN'."""
        r = await self._call(self._health, health_pb.HealthCheckRequest(service=service), timeout)
        return health_pb.HealthCheckResponse.ServingStatus.Name(r.status)

    async def wait_ready(self, timeout=10.0):
        """Waits until the daemon reports SERVING; raises Error on timeout."""
        import asyncio
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        last = None
        while True:
            try:
                if await self.health(timeout=0.5) == "SERVING":
                    return
            except Error as e:
                last = e
            if loop.time() >= end:
                raise last or Error(grpc.StatusCode.UNAVAILABLE, "%s is not SERVING" % self.addr)
            await asyncio.sleep(0.02)

    # -- Codec -------------------------------------------------------------
    async def compress(self, arr, dtype=None, variant=None, q=None, info=False, profile=None):
        r = await self._call(self.codec.Compress, pb.CompressRequest(
            tensor=tensor_of(arr, dtype), params=_params(variant, q, profile)))
        return (r.coded, r) if info else r.coded

    async def decompress(self, coded, out_dtype=None, raw=False, as_torch=False):
        r = await self._call(self.codec.Decompress, pb.DecompressRequest(
            coded=bytes(coded), out_dtype=_out_dtype(out_dtype)))
        return array_of(r.tensor, raw, as_torch)

    async def compress_many(self, arrays, dtype=None, variant=None, q=None, profile=None):
        params = _params(variant, q, profile)
        reqs = [pb.CompressRequest(tensor=tensor_of(a, dtype), params=params) for a in arrays]
        return [r.coded for r in await self._stream(self.codec.CompressStream, reqs)]

    # -- KVStore -----------------------------------------------------------
    async def put(self, key, arr, dtype=None, variant=None, q=None, namespace="", profile=None):
        r = await self._call(self.kv.Put, pb.PutRequest(
            key=_key(namespace, key), tensor=tensor_of(arr, dtype),
            params=_params(variant, q, profile)))
        return r.coded_bytes

    async def put_coded(self, key, coded, namespace=""):
        r = await self._call(self.kv.Put, pb.PutRequest(key=_key(namespace, key),
                                                        coded=bytes(coded)))
        return r.coded_bytes

    async def get(self, key, out_dtype=None, namespace="", raw=False, want_coded=False,
                  tier=False, as_torch=False):
        r = await self._call(self.kv.Get, pb.GetRequest(
            key=_key(namespace, key), want_coded=want_coded, out_dtype=_out_dtype(out_dtype)))
        which = r.WhichOneof("payload")
        if which == "coded":
            value = r.coded
        elif which == "tensor":
            value = array_of(r.tensor, raw, as_torch)
        else:
            raise Error(None, "Get replied with no payload")
        return (value, r.tier) if tier else value

    async def lookup(self, keys, namespace=""):
        ks = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        r = await self._call(self.kv.Lookup, pb.LookupRequest(namespace=namespace, keys=ks))
        return r.prefix_hits, list(r.present)

    async def delete(self, key, namespace=""):
        r = await self._call(self.kv.Delete, pb.DeleteRequest(key=_key(namespace, key)))
        return r.deleted

    async def put_many(self, items, dtype=None, variant=None, q=None, namespace="",
                       profile=None):
        """KVStore/PutStream; the same contract as Client.put_many."""
        params = _params(variant, q, profile)
        reqs = [pb.PutRequest(key=_key(namespace, k), tensor=tensor_of(a, dtype), params=params)
                for k, a in items]
        return [r.coded_bytes for r in await self._stream(self.kv.PutStream, reqs)]

    async def get_many(self, keys, out_dtype=None, namespace="", raw=False, want_coded=False,
                       as_torch=False):
        reqs = [pb.GetRequest(key=_key(namespace, k), want_coded=want_coded,
                              out_dtype=_out_dtype(out_dtype)) for k in keys]
        return [r.coded if r.WhichOneof("payload") == "coded"
                else array_of(r.tensor, raw, as_torch)
                for r in await self._stream(self.kv.GetStream, reqs)]

    # -- Admin -------------------------------------------------------------
    async def push(self, to, keys=None, namespace="", prefix=None, timeout=None):
        """As Client.push: this daemon sends the blocks to the daemon at `to`."""
        return _transfer_results(await self._call(
            self.kv.Push, _push_request(to, keys, namespace, prefix), timeout))

    async def pull(self, from_addr, keys, namespace="", timeout=None):
        """As Client.pull: this daemon fetches the blocks from from_addr."""
        return _transfer_results(await self._call(
            self.kv.Pull, _pull_request(from_addr, keys, namespace), timeout))

    async def stats(self):
        return _as_dict(await self._call(self.admin.Stats, pb.StatsRequest()))


__all__ = ["AsyncClient"]
