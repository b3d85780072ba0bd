# SPDX-License-Identifier: Apache-2.0
"""Test certificates made with the openssl command line, in a temporary folder.

A CA signs the daemon's certificate (SAN 127.0.0.1 and localhost) and a
client certificate; a second, unrelated CA signs a "wrong" client
certificate. Certificates with chosen validity windows (already expired, or
expiring a few seconds from now) are signed with `openssl ca`, whose
-startdate/-enddate take absolute times, so nothing here fakes the clock.
"""

import datetime
import os
import subprocess

SERVER_EXT = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


def _run(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stderr.decode()))


def _asn1(t):
    return t.strftime("%Y%m%d%H%M%SZ")


class Certs:
    def __init__(self, folder):
        self.dir = os.path.abspath(folder)
        self._serial = 1
        self.ca, self.ca_key = self.make_ca("ca")
        self.other_ca, self.other_ca_key = self.make_ca("other-ca")
        self.server, self.server_key = self.sign("server", self.ca, self.ca_key, SERVER_EXT)
        self.client, self.client_key = self.sign("client", self.ca, self.ca_key, CLIENT_EXT)
        self.wrong_client, self.wrong_client_key = self.sign("wrong-client", self.other_ca,
                                                             self.other_ca_key, CLIENT_EXT)

    def path(self, name):
        return os.path.join(self.dir, name)

    def make_ca(self, name):
        crt, key = self.path(name + ".crt"), self.path(name + ".key")
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=latticekv test " + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        return crt, key

    def sign(self, name, ca, ca_key, ext, start=None, end=None):
        """A key and a certificate for CN=name signed by ca, valid from start
        to end (datetimes, UTC; default: an hour ago to a day from now)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        start = start or now - datetime.timedelta(hours=1)
        end = end or now + datetime.timedelta(days=1)
        key, csr, crt = (self.path(name + s) for s in (".key", ".csr", ".crt"))
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + name, cwd=self.dir)
        # A minimal `openssl ca` setup: its own database per signature.
        db, extf, conf, serial = (self.path(name + s) for s in (".index", ".ext", ".cnf",
                                                                ".serial"))
        open(db, "w").close()
        self._serial += 1
        with open(serial, "w") as f:
            f.write("%04X\n" % self._serial)
        with open(extf, "w") as f:
            f.write(ext)
        with open(conf, "w") as f:
            f.write("[ca]\ndefault_ca=c\n[c]\ndatabase=%s\nnew_certs_dir=%s\n"
                    "serial=%s\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
                    "[p]\ncommonName=supplied\n" % (db, self.dir, serial))
        _run("ca", "-batch", "-notext", "-config", conf, "-cert", ca, "-keyfile", ca_key,
             "-in", csr, "-out", crt, "-extfile", extf,
             "-startdate", _asn1(start), "-enddate", _asn1(end), cwd=self.dir)
        return crt, key

    def server_cert(self, name, start=None, end=None):
        """Another daemon certificate from the same CA (rotation, expiry)."""
        return self.sign(name, self.ca, self.ca_key, SERVER_EXT, start, end)
