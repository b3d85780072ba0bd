#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Structural checks of deploy/ that no schema catches.

    structure.py k8s RENDERED.yaml...   objects as `kubectl kustomize` renders them
    structure.py dashboard FILE.json    the Grafana dashboard
    structure.py dockerfile FILE        the Dockerfile's build contract
    structure.py self-test RENDERED.yaml  each check fails on a broken copy
    structure.py base KUSTOMIZATION_DIR   without kubectl: the base's resources
                                          assembled here (namespace, generated
                                          ConfigMap, images), then checked

Kubernetes: required fields, names, label selectors that select the pod
template, probe and Service ports that are container ports, mounts with
volumes, ConfigMap and Secret references, the security context the image
expects (non-root, read-only root), and the daemon's config file (from the
ConfigMap) against the pod: listen port = container port, unix socket inside
a mount, shutdown grace below the pod's termination grace, backend against the
GPU request and image tag. Needs python3-yaml (run with /usr/bin/python3).
"""
import copy
import json
import re
import sys

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(77)

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def conf_settings(text):
    """key -> [values] of a latticekvd config file (the daemon's syntax)."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            k, v = (p.strip() for p in line.split("=", 1))
            out.setdefault(k.replace("_", "-"), []).append(v)
    return out


def check_k8s(objs):
    errs = []
    err = errs.append
    by_kind = {}
    seen = set()
    namespaces = {o["metadata"]["name"] for o in objs if o.get("kind") == "Namespace"}
    for o in objs:
        for f in ("apiVersion", "kind", "metadata"):
            if f not in o:
                err("object without %s: %s" % (f, str(o)[:80]))
        name = o.get("metadata", {}).get("name", "")
        kind = o.get("kind", "?")
        if not DNS1123.match(name) or len(name) > 63:
            err("%s %r: name is not a DNS-1123 label" % (kind, name))
        if (kind, name) in seen:
            err("%s %s appears twice" % (kind, name))
        seen.add((kind, name))
        if kind != "Namespace":
            ns = o["metadata"].get("namespace")
            if ns not in namespaces:
                err("%s %s: namespace %r is not the stream's Namespace %s" %
                    (kind, name, ns, sorted(namespaces)))
        by_kind.setdefault(kind, []).append(o)

    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    services = by_kind.get("Service", [])
    dss = by_kind.get("DaemonSet", [])
    if len(dss) != 1:
        err("expected one DaemonSet, found %d" % len(dss))
        return errs
    ds = dss[0]
    spec = ds["spec"]
    tmpl_labels = spec["template"]["metadata"].get("labels", {})
    pod = spec["template"]["spec"]
    if not selects(spec.get("selector", {}).get("matchLabels"), tmpl_labels):
        err("DaemonSet selector %s does not select its pod template labels %s" %
            (spec.get("selector"), tmpl_labels))
    ru = spec.get("updateStrategy", {}).get("rollingUpdate", {})
    if ru.get("maxSurge", 0) not in (0, "0", "0%"):
        err("DaemonSet maxSurge %r: two daemons on one node would fight over the unix socket" %
            ru.get("maxSurge"))

    # Pod security: what the image and the read-only root assume.
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        err("pod securityContext must set runAsNonRoot: true and a non-zero runAsUser")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    used = set()
    containers = pod.get("containers", [])
    inits = pod.get("initContainers", [])
    ports = {}
    for c in containers + inits:
        cname = c.get("name")
        if not cname or not c.get("image"):
            err("container without name or image: %s" % cname)
            continue
        img = c["image"]
        if ":" not in img.rsplit("/", 1)[-1]:
            err("container %s: image %r has no tag (the kustomization's images: did not apply)" %
                (cname, img))
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            err("container %s: allowPrivilegeEscalation must be false" % cname)
        if sc.get("readOnlyRootFilesystem") is not True:
            err("container %s: readOnlyRootFilesystem must be true" % cname)
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"]:
            err("container %s: capabilities must drop ALL" % cname)
        if c in containers and (caps.get("add") or sc.get("runAsUser") == 0):
            err("container %s: the daemon runs without root or added capabilities" % cname)
        if set(caps.get("add", [])) - {"CHOWN", "FOWNER"}:
            err("container %s: adds capabilities beyond CHOWN/FOWNER: %s" % (cname, caps["add"]))
        if "memory" not in c.get("resources", {}).get("limits", {}):
            err("container %s: no memory limit" % cname)
        mounts = {}
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                err("container %s: volumeMount %s has no volume" % (cname, m["name"]))
            used.add(m["name"])
            mounts[m["mountPath"]] = m["name"]
        c["_mounts"] = mounts
        for p in c.get("ports", []):
            ports[p["containerPort"]] = p
            if p.get("name"):
                ports[p["name"]] = p
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            pr = c.get(probe)
            if pr is None:
                continue
            kind = next((k for k in ("grpc", "httpGet", "tcpSocket", "exec") if k in pr), None)
            if kind in ("grpc", "httpGet", "tcpSocket") and pr[kind].get("port") not in ports:
                err("container %s: %s port %r is not a container port %s" %
                    (cname, probe, pr[kind].get("port"), sorted(map(str, ports))))
    main = containers[0] if containers else {}
    for probe in ("livenessProbe", "readinessProbe"):
        if "grpc" not in main.get(probe, {}):
            err("%s is not a gRPC health probe" % probe)
    for n, v in volumes.items():
        if n not in used:
            err("volume %s is mounted by no container" % n)
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            err("volume %s: ConfigMap %s is not in the stream" % (n, v["configMap"]["name"]))
        if "secret" in v and v["secret"]["secretName"] not in secrets \
                and v["secret"].get("optional") is not True:
            err("volume %s: Secret %s is neither in the stream nor optional" %
                (n, v["secret"]["secretName"]))
    if not any("hostPath" in v for v in volumes.values()):
        err("no hostPath volume (unix socket and SSD tier)")

    # The daemon's config file against the pod.
    args = main.get("args", [])
    conf = None
    if "--config" in args and args.index("--config") + 1 < len(args):
        path = args[args.index("--config") + 1]
        d, f = path.rsplit("/", 1)
        vname = main["_mounts"].get(d)
        cm = volumes.get(vname, {}).get("configMap", {}).get("name")
        if cm not in configmaps or f not in configmaps[cm].get("data", {}):
            err("--config %s is not a key of a ConfigMap mounted at %s" % (path, d))
        else:
            conf = conf_settings(configmaps[cm]["data"][f])
    else:
        err("the daemon is not started with --config")
    if conf is not None:
        tcp = [a for a in conf.get("listen", []) if not a.startswith("unix:")]
        unix = [a[5:] for a in conf.get("listen", []) if a.startswith("unix:")]
        grpc_port = ports.get("grpc", {}).get("containerPort")
        for a in tcp:
            if int(a.rsplit(":", 1)[1]) != grpc_port:
                err("config listen %s does not match the grpc container port %s" % (a, grpc_port))
        if not tcp:
            err("config listens on no TCP address: probes and the Service reach nothing")
        for s in unix:
            d = s.rsplit("/", 1)[0]
            v = volumes.get(main["_mounts"].get(d), {})
            if "hostPath" not in v:
                err("config unix socket %s is not in a hostPath mount (engines cannot see it)" % s)
        grace = int(conf.get("shutdown-grace-ms", ["10000"])[0])
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if grace + 1000 >= tgps * 1000:
            err("shutdown-grace-ms %d + 1 s lame duck is not below terminationGracePeriodSeconds %d"
                % (grace, tgps))
        backend = conf.get("backend", ["auto"])[0]
        gpu = "nvidia.com/gpu" in main.get("resources", {}).get("limits", {})
        tag = main.get("image", "").rsplit(":", 1)[-1]
        if backend == "cuda" and (not gpu or not tag.endswith("-cuda")):
            err("backend = cuda needs an nvidia.com/gpu limit and a -cuda image (tag %s)" % tag)
        if backend == "cpu" and (gpu or pod.get("tolerations") or not tag.endswith("-cpu")):
            err("backend = cpu: no GPU request or GPU toleration, and a -cpu image (tag %s)" % tag)

    for svc in services:
        sname = svc["metadata"]["name"]
        if not selects(svc["spec"].get("selector"), tmpl_labels):
            err("Service %s selects no latticekvd pod" % sname)
        if svc["spec"].get("internalTrafficPolicy") != "Local":
            err("Service %s: internalTrafficPolicy must be Local (node-local)" % sname)
        for p in svc["spec"].get("ports", []):
            if p.get("targetPort", p["port"]) not in ports:
                err("Service %s port %s: targetPort %r is not a container port" %
                    (sname, p.get("name"), p.get("targetPort")))
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"].get("selector", {}).get("matchLabels")
        hit = [s for s in services if selects(sel, s["metadata"].get("labels", {}))]
        if not hit:
            err("ServiceMonitor %s selects no Service" % sm["metadata"]["name"])
        for ep in sm["spec"].get("endpoints", []):
            if not any(ep.get("port") in [p.get("name") for p in s["spec"]["ports"]] for s in hit):
                err("ServiceMonitor endpoint port %r is no port of the selected Service" %
                    ep.get("port"))
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not selects(pdb["spec"].get("selector", {}).get("matchLabels"), tmpl_labels):
            err("PodDisruptionBudget %s selects no latticekvd pod" % pdb["metadata"]["name"])
        if ("minAvailable" in pdb["spec"]) == ("maxUnavailable" in pdb["spec"]):
            err("PodDisruptionBudget needs exactly one of minAvailable and maxUnavailable")
    for np in by_kind.get("NetworkPolicy", []):
        if not selects(np["spec"].get("podSelector", {}).get("matchLabels"), tmpl_labels):
            err("NetworkPolicy %s selects no latticekvd pod" % np["metadata"]["name"])
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                if p.get("port") not in ports:
                    err("NetworkPolicy %s allows port %r, which no container serves" %
                        (np["metadata"]["name"], p.get("port")))
    for kind in ("Namespace", "ServiceAccount", "ConfigMap", "Service", "ServiceMonitor",
                 "PodDisruptionBudget", "NetworkPolicy"):
        if kind not in by_kind:
            err("no %s in the stream" % kind)
    if namespaces:
        nsobj = by_kind["Namespace"][0]
        level = nsobj["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
        if level != "privileged":
            err("Namespace enforces Pod Security %r, which refuses hostPath volumes" % level)
    for c in containers + inits:
        c.pop("_mounts", None)
    return errs


def load(paths):
    objs = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            objs.extend(o for o in yaml.safe_load_all(f) if o is not None)
    return objs


def assemble(root):
    """The parts of `kubectl kustomize` a plain base uses, for machines
    without kubectl: resources, namespace, configMapGenerator (no hash suffix)
    and images. Patches and overlays are not applied."""
    import os
    with open(os.path.join(root, "kustomization.yaml"), encoding="utf-8") as f:
        k = yaml.safe_load(f)
    objs = []
    for r in k.get("resources", []):
        path = os.path.join(root, r)
        if os.path.isdir(path):
            objs.extend(assemble(path))
        else:
            objs.extend(load([path]))
    for g in k.get("configMapGenerator", []):
        data = {}
        for fname in g.get("files", []):
            with open(os.path.join(root, fname), encoding="utf-8") as f:
                data[os.path.basename(fname)] = f.read()
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]},
                     "data": data})
    for o in objs:
        if k.get("namespace") and o["kind"] != "Namespace":
            o["metadata"]["namespace"] = k["namespace"]
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for im in k.get("images", []):
                if c.get("image") == im["name"]:
                    c["image"] = "%s:%s" % (im.get("newName", im["name"]), im.get("newTag", "latest"))
    return objs


def self_test(objs):
    """Every mutation must be caught; returns the mutations that were not."""
    def ds(o):
        return next(x for x in o if x["kind"] == "DaemonSet")

    def main(o):
        return ds(o)["spec"]["template"]["spec"]["containers"][0]

    def cm(o):
        c = next(x for x in o if x["kind"] == "ConfigMap")
        return c["data"]

    def conf_edit(o, old, new):
        d = cm(o)
        k = next(iter(d))
        if old not in d[k]:
            raise AssertionError("self-test: %r not in the config file" % old)
        d[k] = d[k].replace(old, new)

    mutations = {
        "mount without volume": lambda o: main(o)["volumeMounts"].append(
            {"name": "nope", "mountPath": "/nope"}),
        "probe on a closed port": lambda o: main(o)["readinessProbe"]["grpc"].update(port=1234),
        "selector misses template": lambda o: ds(o)["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "other"}),
        "Service targets no port": lambda o: next(
            x for x in o if x["kind"] == "Service")["spec"]["ports"][0].update(targetPort="grpcx"),
        "root filesystem writable": lambda o: main(o)["securityContext"].update(
            readOnlyRootFilesystem=False),
        "grace too short": lambda o: ds(o)["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=5),
        "listen port differs": lambda o: conf_edit(o, ":50051", ":50052"),
        "socket outside hostPath": lambda o: conf_edit(
            o, "unix:/run/latticekv/", "unix:/tmp/"),
        "required Secret missing": lambda o: next(
            v for v in ds(o)["spec"]["template"]["spec"]["volumes"] if "secret" in v
        )["secret"].update(optional=False),
        "ServiceMonitor port unknown": lambda o: next(
            x for x in o if x["kind"] == "ServiceMonitor")["spec"]["endpoints"][0].update(
                port="prom"),
        "maxSurge 1": lambda o: ds(o)["spec"]["updateStrategy"]["rollingUpdate"].update(maxSurge=1),
    }
    missed = []
    base = check_k8s(copy.deepcopy(objs))
    if base:
        return ["the unmodified objects already fail: %s" % base]
    for what, mutate in mutations.items():
        o = copy.deepcopy(objs)
        mutate(o)
        errs = check_k8s(o)
        print("  %-28s -> %s" % (what, errs[0] if errs else "NOT CAUGHT"))
        if not errs:
            missed.append(what)
    return missed


METRIC_RE = re.compile(r"\b(latticekv_[a-z0-9_]+|[a-z_]+(?=\{))")


def check_dashboard(path):
    errs = []
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    for f_ in ("title", "uid", "panels", "schemaVersion"):
        if f_ not in d:
            errs.append("dashboard has no %s" % f_)
    ids = set()
    metrics = set()
    vars_ = {v["name"] for v in d.get("templating", {}).get("list", [])}
    panels = []
    for p in d.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    for p in panels:
        if p.get("id") in ids:
            errs.append("panel id %s twice" % p.get("id"))
        ids.add(p.get("id"))
        if "gridPos" not in p:
            errs.append("panel %s has no gridPos" % p.get("title"))
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            names = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*[{\[])|latticekv_[a-z0-9_]+", expr)
            for n in names:
                if n in ("by", "without", "sum", "rate", "increase", "histogram_quantile",
                         "max", "min", "avg", "count", "topk", "irate", "on", "ignoring",
                         "group_left", "clamp_min", "label_replace"):
                    continue
                if not n.startswith("latticekv_"):
                    errs.append("panel %r: metric %r does not start with latticekv_" %
                                (p.get("title"), n))
                metrics.add(re.sub(r"_(bucket|sum|count)$", "", n))
            for v in re.findall(r"\$(\w+)", expr):
                if v not in vars_ and v not in ("__rate_interval", "__interval", "__range"):
                    errs.append("panel %r uses $%s, which is no dashboard variable" %
                                (p.get("title"), v))
    if not metrics:
        errs.append("the dashboard queries no latticekv_ metric")
    return errs, sorted(metrics)


def check_dockerfile(path):
    errs = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    if not froms:
        return ["no FROM"]
    if "scripts/deps.sh" not in text:
        errs.append("the builder does not install with scripts/deps.sh (same apt packages)")
    if "deploy/build-image-steps.sh" not in text:
        errs.append("the build does not run deploy/build-image-steps.sh (the steps CI runs)")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errs.append("the last stage does not switch to a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        errs.append("USER %s: use a numeric uid, so runAsNonRoot can verify it" % users[-1])
    for needed in ("cpu", "cuda"):
        if not any(needed in (alias or "") for _, alias in froms):
            errs.append("no stage for the %s variant" % needed)
    if not re.search(r"^ARG\s+DEBIAN=debian:12\b", text, re.M):
        errs.append("the base is not pinned to Debian 12 (ARG DEBIAN=debian:12)")
    return errs


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    what, files = argv[1], argv[2:]
    if what == "k8s":
        objs = load(files)
        errs = check_k8s(objs)
        for e in errs:
            print("FAIL: %s" % e)
        print("%d objects from %s: %s" % (len(objs), " ".join(files),
                                          "%d problems" % len(errs) if errs else "ok"))
        return 1 if errs else 0
    if what == "base":
        objs = assemble(files[0])
        errs = check_k8s(objs)
        for e in errs:
            print("FAIL: %s" % e)
        print("%d objects assembled from %s without kubectl: %s" %
              (len(objs), files[0], "%d problems" % len(errs) if errs else "ok"))
        return 1 if errs else 0
    if what == "self-test":
        missed = self_test(load(files))
        for m in missed:
            print("FAIL: the check does not catch: %s" % m)
        return 1 if missed else 0
    if what == "dashboard":
        errs, metrics = check_dashboard(files[0])
        for e in errs:
            print("FAIL: %s" % e)
        print("dashboard queries %d metrics: %s" % (len(metrics), " ".join(metrics)))
        return 1 if errs else 0
    if what == "dockerfile":
        errs = check_dockerfile(files[0])
        for e in errs:
            print("FAIL: %s" % e)
        print("%s: %s" % (files[0], "%d problems" % len(errs) if errs else "ok"))
        return 1 if errs else 0
    print("unknown check %r" % what)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
