#!/usr/bin/env python3
"""Render bench/run.sh results as Markdown, or splice them into a document.

  report.py --date D --machine M --versions V SIZE=results.tsv...  > table.md
  report.py --splice docs/benchmarks.md table.md

results.tsv: "key<TAB>value" lines written by bench/run.sh (times in seconds,
RSS in KiB, sizes in bytes). --splice replaces what is between the lines
<!-- bench:begin --> and <!-- bench:end --> (creating the file if needed).
"""

import argparse
import os
import sys

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def load(path):
    r = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            if v:
                r[k] = float(v)
    return r


def mb(b):
    return b / 1e6


def mib_rss(kib):
    return kib / 1024


def ratio(a, b):
    return a / b if b else float("nan")


def verdict(ok):
    return "met" if ok else "**missed**"


def render(args):
    sizes = []
    for spec in args.results:
        s, _, path = spec.partition("=")
        sizes.append((s, load(path)))
    out = []
    w = out.append
    dates = []
    for spec in args.results:
        s_, _, path = spec.partition("=")
        d = os.path.join(os.path.dirname(path), "date")
        if os.path.exists(d):
            dates.append("%s× set %s" % (s_, open(d).read().strip()))
    w("Measured on %s (%s)." % (args.machine, "; ".join(dates) or args.date))
    w("")
    w("Versions: %s." % args.versions)
    w("")
    checks = []
    for s, r in sizes:
        g = r.get
        w("### Set %s× — %.0f MB uncompressed (amd64), %.0f MB as gzip layers in the registry"
          % (s, mb(g("set.uncompressed", 0)), mb(g("set.gzip", 0))))
        w("")
        w("| | podsec | u7s-bundle xz | xz / podsec | u7s-bundle zstd | zstd / podsec |")
        w("|---|---:|---:|---:|---:|---:|")

        def row(label, key, fmt, conv):
            p = g("podsec." + key)
            x = g("ours.xz." + key)
            z = g("ours.zstd." + key)
            cells = [label]
            cells.append(fmt % conv(p) if p is not None else "–")
            cells.append(fmt % conv(x) if x is not None else "–")
            cells.append("%.2f×" % ratio(x, p) if p and x is not None else "–")
            cells.append(fmt % conv(z) if z is not None else "–")
            cells.append("%.2f×" % ratio(z, p) if p and z is not None else "–")
            w("| " + " | ".join(cells) + " |")

        row("archive size, MB", "size", "%.1f", mb)
        row("build wall time, s", "build.wall", "%.1f", lambda v: v)
        row("build CPU time (user+sys), s", "build.cpu", "%.1f", lambda v: v)
        row("build peak RSS, MiB", "build.rss", "%.0f", mib_rss)
        row("load wall time, s", "load.wall", "%.1f", lambda v: v)
        row("load CPU time, s", "load.cpu", "%.1f", lambda v: v)
        row("load peak RSS, MiB", "load.rss", "%.0f", mib_rss)
        row("reload wall time, s", "reload.wall", "%.1f", lambda v: v)
        row("reload CPU time, s", "reload.cpu", "%.1f", lambda v: v)
        row("reload peak RSS, MiB", "reload.rss", "%.0f", mib_rss)
        def la(side):
            v = [g("%s.%s.loadavg" % (side, st)) for st in ("build", "load", "reload")]
            return " / ".join("–" if x is None else "%.1f" % x for x in v)
        w("| 1-min load average before build / load / reload | %s | %s | | %s | |"
          % (la("podsec"), la("ours.xz"), la("ours.zstd")))
        w("| reload / first load | %.2f× | %.2f× | | %.2f× | |" % (
            ratio(g("podsec.reload.wall"), g("podsec.load.wall")),
            ratio(g("ours.xz.reload.wall"), g("ours.xz.load.wall")),
            ratio(g("ours.zstd.reload.wall"), g("ours.zstd.load.wall"))))
        w("| signature files after load + reload | %d | %d | | %d | |" % (
            g("podsec.signatures", 0), g("ours.xz.signatures", 0), g("ours.zstd.signatures", 0)))
        w("")
        if g("ours.lc_gzip.load.wall") is not None:
            w("Load of the zstd bundle with layers compressed on the way (`--layer-compression`; "
              "podsec's load compresses every layer with gzip):")
            w("")
            w("| | load wall, s | load / podsec load | load CPU, s | load peak RSS, MiB | reload wall, s |")
            w("|---|---:|---:|---:|---:|---:|")
            for lc in ("gzip", "zstd"):
                k = "ours.lc_%s." % lc
                if g(k + "load.wall") is None:
                    continue
                w("| `--layer-compression %s` | %.1f | %.2f× | %.1f | %.0f | %.1f |" % (
                    lc, g(k + "load.wall"), ratio(g(k + "load.wall"), g("podsec.load.wall")),
                    g(k + "load.cpu", 0), mib_rss(g(k + "load.rss", 0)), g(k + "reload.wall", 0)))
            w("")
        w("podsec build: `xz -9` alone took %.1f s of it (peak RSS %.0f MiB); the archive is "
          "`tar c amd64` of a %.0f MB OCI layout. Reference compressors on that same tar: "
          "`zstd -12 --long=27 --zstd=hlog=25,clog=25,ovlog=9 -B64M -T%d` (our settings) %.1f s, %.1f MB, %.0f MiB RSS; `xz -9 -T%d` says it needs "
          "up to %.0f MiB." % (
              g("podsec.xz.wall", 0), mib_rss(g("podsec.xz.rss", 0)), mb(g("podsec.tar", 0)),
              os.cpu_count(), g("ref.zstd.wall", 0), mb(g("ref.zstd.size", 0)),
              mib_rss(g("ref.zstd.rss", 0)), os.cpu_count(), g("ref.xz_mt.mib", 0)))
        w("")

        def chk(label, val, limit, unit="×"):
            if val is None:
                return
            checks.append((s, label, "%.2f%s" % (val, unit) if unit == "×" else "%.0f %s" % (val, unit),
                           ("≤ %.2f×" % limit) if unit == "×" else "≤ %.0f %s" % (limit, unit),
                           verdict(val <= limit)))

        def rr(a, b):
            return ratio(g(a), g(b)) if g(a) is not None and g(b) else None

        chk("archive size, xz", rr("ours.xz.size", "podsec.size"), 1.00)
        chk("build time, xz", rr("ours.xz.build.wall", "podsec.build.wall"), 0.60)
        chk("build time, zstd", rr("ours.zstd.build.wall", "podsec.build.wall"), 0.15)
        chk("archive size, zstd", rr("ours.zstd.size", "podsec.size"), 1.25)
        chk("load time, xz bundle", rr("ours.xz.load.wall", "podsec.load.wall"), 0.50)
        chk("load time, zstd bundle", rr("ours.zstd.load.wall", "podsec.load.wall"), 0.25)
        chk("reload / first load, xz", rr("ours.xz.reload.wall", "ours.xz.load.wall"), 0.10)
        chk("reload / first load, zstd", rr("ours.zstd.reload.wall", "ours.zstd.load.wall"), 0.10)
        for c in ("xz", "zstd"):
            v = g("ours.%s.load.rss" % c)
            if v is not None:
                chk("load peak RSS, %s" % c, mib_rss(v), 200, "MiB")
        # build RSS: what the compressor itself needs + 200 MiB
        if g("ours.xz.build.rss") is not None and g("ref.xz_mt.mib"):
            chk("build peak RSS, xz (xz -9 -T%d needs %.0f MiB)" % (os.cpu_count(), g("ref.xz_mt.mib")),
                mib_rss(g("ours.xz.build.rss")), g("ref.xz_mt.mib") + 200, "MiB")
        if g("ours.zstd.build.rss") is not None and g("ref.zstd.rss"):
            chk("build peak RSS, zstd (zstd CLI at our settings: %.0f MiB)" % mib_rss(g("ref.zstd.rss")),
                mib_rss(g("ours.zstd.build.rss")), mib_rss(g("ref.zstd.rss")) + 200, "MiB")

    if len(sizes) > 1:
        (s1, r1), (s3, r3) = sizes[0], sizes[-1]
        for key, label in (("ours.xz.build.rss", "build RSS, xz"), ("ours.zstd.build.rss", "build RSS, zstd"),
                           ("ours.xz.load.rss", "load RSS, xz"), ("ours.zstd.load.rss", "load RSS, zstd")):
            a, b = r1.get(key), r3.get(key)
            if a and b:
                grow = b / a
                checks.append(("%s→%s" % (s1, s3), label + " does not grow", "%.2f×" % grow,
                               "≈ 1× (≤ 1.10×)", verdict(grow <= 1.10)))
    w("### Targets of issue 5")
    w("")
    w("| set | target | measured | limit | |")
    w("|---|---|---:|---:|---|")
    for s, label, val, lim, v in checks:
        w("| %s× | %s | %s | %s | %s |" % (s, label, val, lim, v))
    w("")
    return "\n".join(out)


def splice(doc, table):
    with open(table) as f:
        body = f.read().rstrip("\n")
    text = ""
    if os.path.exists(doc):
        with open(doc) as f:
            text = f.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    else:
        head = text or "# Benchmarks\n\n"
        if not head.endswith("\n\n"):
            head = head.rstrip("\n") + "\n\n"
        tail = "\n"
    with open(doc + ".tmp", "w") as f:
        f.write(head + BEGIN + "\n" + body + "\n" + END + tail)
    os.replace(doc + ".tmp", doc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--splice", nargs=2, metavar=("DOC", "TABLE"))
    ap.add_argument("--date", default="")
    ap.add_argument("--machine", default="")
    ap.add_argument("--versions", default="")
    ap.add_argument("results", nargs="*", help="SIZE=results.tsv")
    a = ap.parse_args()
    if a.splice:
        splice(*a.splice)
        return
    if not a.results:
        ap.error("no results")
    a.results = sorted(a.results, key=lambda x: x.split("=", 1)[0])
    print(render(a))


if __name__ == "__main__":
    main()
