#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Render the latticekvd config files of deploy/k8s from `latticekvd --help`.

The daemon's settings are one table (server/config.c) and `latticekvd --help`
prints all of it: flag, metavariable, help line, environment variable, default
and range. This script reads that text, takes the values a deployment sets
from small `settings.conf` files (same `key = value` syntax as the daemon's
config file, `#` comments), checks every value against the table (known key,
one of the choices, inside the range) and writes a config file that lists
every setting: the deployment's values uncommented, each other setting as a
commented-out line holding its embedded default, each with its help text.

    deploy/gen-config.py --latticekvd build/server/latticekvd --write
    deploy/gen-config.py --latticekvd build/server/latticekvd --check

--check renders to memory and fails (exit 1, with a diff) when a committed
file differs: a setting was added, renamed or re-documented in the daemon and
the ConfigMap was not regenerated. tests/deploy runs it.

With --latticekv CLI it also renders the generated sections of
docs/operations.md (between "BEGIN generated" and "END generated" markers):
the config reference, from the same --help text, and the capacity-planning
table, from `latticekv codec info --json` (the codec's own bits per vector).
"""
import argparse
import difflib
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (settings files applied in order, rendered file, what it is for). Paths are
# relative to deploy/.
TARGETS = [
    (["k8s/base/settings.conf"], "k8s/base/latticekvd.conf", "the GPU DaemonSet (deploy/k8s)"),
    (["k8s/base/settings.conf", "k8s/overlays/cpu/settings.conf"], "k8s/overlays/cpu/latticekvd.conf",
     "the CPU-only overlay (deploy/k8s/overlays/cpu)"),
]

# Settings a config file cannot hold: `config` (files cannot include others)
# and the two actions.
NOT_IN_FILE = {"config", "help", "version"}

FLAG_RE = re.compile(r"^  --([a-z0-9][a-z0-9-]*)(?: (\S+))?(?:\s{2,}(.*))?$")
META_RE = re.compile(r"^\s+env (LATTICEKV_[A-Z0-9_]+), default (.*?)(?:, range (\d+)\.\.(\d+))?$")


class Setting:
    def __init__(self, name, arg, help_text):
        self.name, self.arg, self.help = name, arg, help_text
        self.env = None
        self.default = None
        self.range = None
        self.repeatable = "(repeatable)" in help_text

    @property
    def choices(self):
        if self.arg and "|" in self.arg:
            return self.arg.split("|")
        return None


def parse_help(text):
    """Settings in --help order. Fails loudly on a line it does not understand,
    so a change of the help layout breaks the test instead of dropping rows."""
    settings = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) and not lines[i].startswith("  --"):
        i += 1
    if i == len(lines):
        raise SystemExit("gen-config: no '  --flag' lines in latticekvd --help output")
    for line in lines[i:]:
        if not line.strip():
            continue
        m = FLAG_RE.match(line)
        if m and not line.startswith("   "):
            settings.append(Setting(m.group(1), m.group(2), (m.group(3) or "").strip()))
            continue
        m = META_RE.match(line)
        if m and settings and settings[-1].env is None:
            s = settings[-1]
            s.env = m.group(1)
            s.default = m.group(2)
            if m.group(3) is not None:
                s.range = (int(m.group(3)), int(m.group(4)))
            continue
        raise SystemExit("gen-config: cannot read this line of latticekvd --help: %r" % line)
    for s in settings:
        if s.env is None and s.name not in ("help", "version"):
            raise SystemExit("gen-config: --%s has no 'env ..., default ...' line in --help" % s.name)
    return settings


SIZE_RE = re.compile(r"^(\d+)\s*(?:([KMGT])(?:i?B)?|B)?$", re.IGNORECASE)


def check_value(s, value, where):
    """The checks the daemon makes, as far as they can be made from --help."""
    if s.choices:
        if value.lower() not in s.choices:
            raise SystemExit("%s: %s = %s is not one of %s" % (where, s.name, value, s.arg))
    elif s.arg == "MODE":
        if not re.fullmatch(r"0?[0-7]{1,3}", value):
            raise SystemExit("%s: %s = %s is not octal permission bits (e.g. 0660)" %
                             (where, s.name, value))
    elif s.range:
        m = SIZE_RE.match(value)
        if not m:
            raise SystemExit("%s: %s = %s is not a number" % (where, s.name, value))
        n = int(m.group(1))
        if m.group(2):
            n <<= 10 * "KMGT".index(m.group(2).upper()) + 10
        lo, hi = s.range
        if not lo <= n <= hi:
            raise SystemExit("%s: %s = %s is outside %d..%d" % (where, s.name, value, lo, hi))


def read_settings(path, known):
    """key -> [(value, comment lines)] of one settings file; keys must be the
    exact flag names (the daemon also takes '_' for '-', this file does not,
    so that the rendered file has one spelling)."""
    out = {}
    comment = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            where = "%s:%d" % (os.path.relpath(path, HERE), n)
            if line.startswith("#"):
                comment.append(line[1:].strip())
                continue
            if not line.strip():
                comment = []
                continue
            if "=" not in line:
                raise SystemExit("%s: %r is not key = value" % (where, line))
            key, value = (p.strip() for p in line.split("=", 1))
            if "#" in value:
                raise SystemExit("%s: put comments on their own line" % where)
            if key in NOT_IN_FILE or key not in known:
                near = difflib.get_close_matches(key, list(known), 1)
                raise SystemExit("%s: unknown setting %r%s" % (
                    where, key, " (did you mean %r?)" % near[0] if near else ""))
            s = known[key]
            check_value(s, value, where)
            if key in out and not s.repeatable:
                raise SystemExit("%s: %s is set twice" % (where, key))
            out.setdefault(key, []).append((value, comment))
            comment = []
    return out


def render(settings, layers, purpose, sources):
    known = {s.name: s for s in settings}
    chosen = {}
    for path in layers:
        # A later file replaces an earlier one's value (a list as a whole),
        # like the daemon's own layers.
        chosen.update(read_settings(path, known))
    out = [
        "# latticekvd config file for %s." % purpose,
        "# GENERATED by deploy/gen-config.py from `latticekvd --help` and %s;" % " + ".join(sources),
        "# do not edit: change the settings file and run",
        "#   deploy/gen-config.py --latticekvd build/server/latticekvd --write",
        "# (the deploy_config ctest fails when this file and the daemon's settings differ).",
        "#",
        "# Every setting of the daemon is listed. Uncommented lines are this deployment's;",
        "# a commented line shows the embedded default. Keys are the flags without '--';",
        "# each is also the environment variable shown (environment and flags override",
        "# this file).",
    ]
    for s in settings:
        if s.name in NOT_IN_FILE:
            continue
        out.append("")
        arg = " " + s.arg if s.arg else ""
        out.append("# %s%s: %s" % (s.name, arg, s.help))
        extra = ", range %d..%d" % s.range if s.range else ""
        out.append("#   env %s, default %s%s" % (s.env, s.default, extra))
        if s.name in chosen:
            for value, why in chosen[s.name]:
                for k, w in enumerate(why):
                    out.append(("#   deployment: " if k == 0 else "#     ") + w)
                out.append("%s = %s" % (s.name, value))
        elif s.default == "(none)":
            out.append("# %s =" % s.name)
        else:
            defaults = s.default.split(",") if s.repeatable else [s.default]
            out.extend("# %s = %s" % (s.name, v) for v in defaults)
    return "\n".join(out) + "\n"


DOCS = "../docs/operations.md"

# Common models' KV geometry: (name, layers, KV heads, head_dim), from their
# published configs (num_hidden_layers, num_key_value_heads, head_dim).
MODELS = [
    ("Llama-3.1-8B", 32, 8, 128),
    ("Llama-3.1-70B", 80, 8, 128),
    ("Mistral-7B", 32, 8, 128),
    ("Qwen2.5-7B", 28, 4, 128),
]
CODECS = [("e8", 10), ("e8", 38), ("e8", 152), ("d4", 10), ("d4", 38)]


def render_config_reference(settings):
    out = ["| flag | environment | default | range / values | meaning |",
           "|---|---|---|---|---|"]
    for s in settings:
        if s.name in ("help", "version"):
            continue
        arg = " " + s.arg if s.arg else ""
        if s.range:
            rng = "%d..%d" % s.range
        elif s.choices:
            rng = ", ".join("`%s`" % c for c in s.choices)
        else:
            rng = ""
        out.append("| `--%s%s` | `%s` | %s | %s | %s |" % (
            s.name, arg.replace("|", "\\|"), s.env,
            "`%s`" % s.default if s.default != "(none)" else "none", rng,
            s.help.replace("|", "\\|")))
    return "\n".join(out) + "\n"


def codec_info(cli, variant, q, dim):
    import json
    r = subprocess.run([cli, "codec", "info", "--variant", variant, "--q", str(q), "--dim",
                        str(dim), "--json"], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def render_capacity(cli):
    out = ["Coded bytes of one token's KV cache (K and V, every layer), and tokens per GiB",
           "of tier capacity, for each variant and Q; bf16 for comparison. Computed by",
           "`deploy/gen-config.py` from `latticekv codec info --json` (bytes per vector",
           "of head_dim 128) x layers x KV heads x 2. A stored block adds a container",
           "header (24 + 8 x dims + 8 bytes, e.g. 56 for a 3-dim tensor) and its",
           "namespace and key; with 16-token blocks of one layer's K or V that is under",
           "1% and is left out here.", ""]
    head = "| model (layers x KV heads x head_dim) | bf16 |"
    rule = "|---|---:|"
    for v, q in CODECS:
        head += " %s Q=%d |" % (v.upper(), q)
        rule += "---:|"
    out += [head, rule]
    infos = {}
    for name, layers, heads, dim in MODELS:
        row = "| %s (%d x %d x %d) | %s |" % (name, layers, heads, dim,
                                              fmt_bytes(layers * heads * 2 * dim * 2))
        for v, q in CODECS:
            info = infos.setdefault((v, q, dim), codec_info(cli, v, q, dim))
            row += " %s |" % fmt_bytes(layers * heads * 2 * info["bytes_per_vector"])
        out.append(row)
    out += ["", "Tokens per GiB of tier capacity:", "", head, rule]
    for name, layers, heads, dim in MODELS:
        row = "| %s | %s |" % (name, fmt_count((1 << 30) // (layers * heads * 2 * dim * 2)))
        for v, q in CODECS:
            per = layers * heads * 2 * infos[(v, q, dim)]["bytes_per_vector"]
            row += " %s |" % fmt_count((1 << 30) // per)
        out.append(row)
    ratio = ["", "Bytes per vector of head_dim 128 (ratio vs bf16):"]
    ratio.append(", ".join("%s Q=%d: %d B (%.3fx)" % (v.upper(), q, infos[(v, q, 128)]["bytes_per_vector"],
                                                     infos[(v, q, 128)]["ratio_vs_bf16"])
                           for v, q in CODECS) + ".")
    return "\n".join(out + ratio) + "\n"


def fmt_bytes(n):
    return "%.1f KiB" % (n / 1024.0)


def fmt_count(n):
    return "{:,}".format(n)


def splice(text, section, body):
    begin = "<!-- BEGIN generated: %s (deploy/gen-config.py --write) -->\n" % section
    end = "<!-- END generated: %s -->" % section
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise SystemExit("gen-config: %s has no %r ... %r markers" % (DOCS, begin.strip(), end))
    return text[:i + len(begin)] + body + text[j:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latticekvd", required=True, help="the daemon binary whose --help is read")
    ap.add_argument("--latticekv", help="the CLI: also render docs/operations.md's generated parts")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the rendered files")
    mode.add_argument("--check", action="store_true", help="fail if a committed file differs")
    mode.add_argument("--print", action="store_true", help="print the rendered files")
    a = ap.parse_args()
    help_text = subprocess.run([a.latticekvd, "--help"], check=True, capture_output=True,
                               text=True).stdout
    settings = parse_help(help_text)
    stale = []
    renders = []
    for layers, target, purpose in TARGETS:
        renders.append((target, render(settings, [os.path.join(HERE, p) for p in layers], purpose,
                                       ["deploy/" + p for p in layers])))
    if a.latticekv:
        with open(os.path.join(HERE, DOCS), encoding="utf-8") as f:
            doc = f.read()
        doc = splice(doc, "config reference", render_config_reference(settings))
        doc = splice(doc, "capacity", render_capacity(a.latticekv))
        renders.append((DOCS, doc))
    for target, text in renders:
        path = os.path.join(HERE, target)
        if a.print:
            sys.stdout.write("==> deploy/%s <==\n%s" % (target, text))
        elif a.write:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote deploy/%s" % target)
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    old = f.read()
            except FileNotFoundError:
                old = ""
            if old != text:
                stale.append(target)
                sys.stdout.writelines(difflib.unified_diff(
                    old.splitlines(True), text.splitlines(True),
                    "deploy/%s (committed)" % target, "deploy/%s (from --help)" % target))
    if stale:
        print("\nFAIL: %s no longer match(es) the daemon's settings; run\n"
              "  deploy/gen-config.py --latticekvd %s%s --write\nand commit the result." %
              (", ".join("deploy/" + t for t in stale), a.latticekvd,
               " --latticekv " + a.latticekv if a.latticekv else ""))
        return 1
    if a.check:
        print("ok: %d files match latticekvd --help (%d settings)" %
              (len(renders), len(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
