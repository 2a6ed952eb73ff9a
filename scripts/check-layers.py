#!/usr/bin/env python3
"""Checks the #include lines of the C sources against the project's layering.

  scripts/check-layers.py [--root DIR]   check the tree (default: the repository)
  scripts/check-layers.py --self-test    check that every rule catches its case

Run by ctest as lint.layers (and lint.layers.selftest). Exit status 1 when a
rule is broken; warnings alone exit 0. Only Python's standard library.

The rules (docs/conventions.md has the why):
  1. proto/ includes only proto/ headers and no I/O library (libevent,
     hiredis, libpq).
  2. common/ includes only common/ and proto/ headers.
  3. gateway/ and storage/ never include each other's headers.
  4. The gateway's transport is layered (TRANSPORT below, bottom to top): a
     transport file includes the private header of its own layer and of the
     layers below, never one above, nor the umbrella gw.h, nor the app side
     (gateway/chat/). A new transport file or gw_*.h header must be
     given a layer here.
  5. Applications reach the transport only through app.h: gateway/app_*.c
     and everything in gateway/chat/ include no gw.h and no gw_*.h; in
     gateway/chat/ only app.h, the folder's own headers (gc.h), common/ and
     proto/ headers are allowed.

A quoted include is resolved as the compiler would find it: the including
file's folder first, then the program's own folders, common/, proto/.
"""
import os
import re
import sys
import tempfile

# The transport's layers, bottom to top, with their files. app.h, the
# applications' interface, is the bottom: it includes only proto/, and
# declares what several layers implement for apps (sockets, the worker,
# timers, pools, shared output bytes); services.c lends the worker's parts.
TRANSPORT = [
    ("app", ["app.h"]),
    ("loop", ["gw_loop.h", "loop.c", "theap.c", "pool.c", "blob.c"]),
    ("conn", ["gw_conn.h", "conn.c"]),
    ("static", ["gw_static.h", "static.c"]),
    ("http", ["gw_http.h", "http.c"]),
    ("ws", ["gw_ws.h", "ws.c"]),
    ("engine", ["gw_engine.h", "engine.c"]),
    ("sio", ["gw_sio.h", "socketio.c"]),
    ("worker", ["gw_worker.h", "worker.c", "services.c"]),
]
# gateway/ files outside the transport (the program, its settings, logging,
# Redis link, rate limits, the application table and the apps).
GATEWAY_OTHER = {"main.c", "config.c", "config.h",
                 "ratelimit.c", "apps.c", "gw.h"}
# gateway/ headers any transport file may include (below the transport).
GATEWAY_BASE = {"config.h"}
# gateway/ headers that gateway/chat/ may include besides app.h: the
# program's settings table (the chat's rows are in it; gw_worker_config
# hands it out read-only).
CHAT_EXTRA = {"config.h"}
# Files whose violations are only warned about (none: a new one needs a
# reason here).
WARN_ONLY = set()
IO_LIBS = re.compile(r"^(event2/|event\.h$|evhttp\.h$|hiredis/|libpq-fe\.h$|libpq/|postgresql/)")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
LAYER_OF = {f: (i, name) for i, (name, files) in enumerate(TRANSPORT) for f in files}


def sources(root):
    """Every .c and .h under the checked folders, as paths relative to root."""
    out = []
    for top in ("proto", "common", "gateway", "storage"):
        base = os.path.join(root, top)
        for d, _, files in os.walk(base):
            for f in files:
                if f.endswith((".c", ".h")):
                    out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


def program(rel):
    return rel.split(os.sep)[0]


def headers_under(root, top):
    """basename -> relative paths of the headers under root/top."""
    idx = {}
    for d, _, files in os.walk(os.path.join(root, top)):
        for f in files:
            if f.endswith(".h"):
                idx.setdefault(f, []).append(os.path.relpath(os.path.join(d, f), root))
    return idx


def resolve(root, rel, name, index):
    """Where the quoted include `name` of file rel is found, or None."""
    here = os.path.normpath(os.path.join(os.path.dirname(rel), name))
    if os.path.isfile(os.path.join(root, here)):
        return here
    if "/" in name:
        for top in ("proto", "common", "gateway", "storage"):
            cand = os.path.normpath(os.path.join(top, name))
            if os.path.isfile(os.path.join(root, cand)):
                return cand
        return None
    own = program(rel)
    order = [own] + [t for t in ("common", "proto") if t != own]
    for top in order:
        hits = index[top].get(name)
        if hits:
            # the program's main folder before its subfolders
            return sorted(hits, key=lambda p: (p.count(os.sep), p))[0]
    for top in ("gateway", "storage", "common", "proto"):
        hits = index[top].get(name)
        if hits:
            return sorted(hits, key=lambda p: (p.count(os.sep), p))[0]
    return None


def check(root):
    errors, warnings = [], []
    index = {t: headers_under(root, t) for t in ("proto", "common", "gateway", "storage")}
    for rel in sources(root):
        top = program(rel)
        parts = rel.split(os.sep)
        base = parts[-1]
        in_chat = top == "gateway" and len(parts) > 2 and parts[1] == "chat"
        gw_top = top == "gateway" and len(parts) == 2
        is_app = gw_top and base.startswith("app_") and base.endswith(".c")
        layer = LAYER_OF.get(base) if gw_top else None
        if gw_top and layer is None and not is_app and base not in GATEWAY_OTHER:
            errors.append(f"{rel}: not placed: give it a layer in TRANSPORT (transport) "
                          "or list it in GATEWAY_OTHER (scripts/check-layers.py)")
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
        for no, line in enumerate(lines, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, name = m.groups()
            where = f"{rel}:{no}"
            if kind == "<":
                if top == "proto" and IO_LIBS.match(name):
                    errors.append(f"{where}: proto/ does no I/O, but includes <{name}>")
                continue
            target = resolve(root, rel, name, index)
            if target is None:
                warnings.append(f'{where}: "{name}" not found under proto, common, gateway, storage')
                continue
            ttop = program(target)
            tparts = target.split(os.sep)
            tbase = tparts[-1]
            if top == "proto" and ttop != "proto":
                errors.append(f'{where}: proto/ includes only proto/, not "{target}"')
            if top == "common" and ttop not in ("common", "proto"):
                errors.append(f'{where}: common/ includes only common/ and proto/, not "{target}"')
            if {top, ttop} == {"gateway", "storage"}:
                errors.append(f'{where}: {top}/ and {ttop}/ never include each other ("{target}")')
            if ttop != "gateway" or top != "gateway":
                continue
            t_chat = len(tparts) > 2 and tparts[1] == "chat"
            t_gw_top = len(tparts) == 2
            t_private = t_gw_top and (tbase == "gw.h" or tbase.startswith("gw_"))
            if layer is not None:
                own_rank, own_name = layer
                if tbase == "gw.h" and t_gw_top:
                    errors.append(f"{where}: the transport includes its layer's header, "
                                  "not the umbrella gw.h")
                elif t_gw_top and tbase in LAYER_OF:
                    rank, name_ = LAYER_OF[tbase]
                    if rank > own_rank:
                        errors.append(f"{where}: {base} (layer {own_name}) includes {tbase} "
                                      f"(layer {name_}, above it)")
                elif t_private:
                    errors.append(f"{where}: {tbase} has no layer: add it to TRANSPORT")
                elif t_chat or not (t_gw_top and tbase in GATEWAY_BASE):
                    errors.append(f'{where}: the transport does not include the app side ("{target}")')
            elif is_app and t_private:
                msg = f"{where}: apps reach the transport through app.h, not {tbase}"
                (warnings if rel in WARN_ONLY else errors).append(msg)
            elif in_chat:
                ok = (t_chat and tparts[:-1] == parts[:-1]) or \
                     (t_gw_top and (tbase == "app.h" or tbase in CHAT_EXTRA))
                if not ok:
                    errors.append(f'{where}: gateway/chat/ includes only app.h, its own headers, '
                                  f'common/ and proto/, not "{target}"')
    return errors, warnings


def self_test():
    """Each rule once, on a small tree: every case must be reported, and the
    same tree without them must pass."""
    files = {
        "proto/pr.h": "",
        "proto/eio.h": '#include "pr.h"\n',
        "common/cm_log.h": '#include "pr.h"\n',
        "gateway/config.h": "",
        "gateway/gw.h": '#include "gw_worker.h"\n',
        "gateway/app.h": '#include "pr.h"\n',
        "gateway/gw_loop.h": '#include "config.h"\n#include "app.h"\n#include "eio.h"\n',
        "gateway/gw_conn.h": '#include "gw_loop.h"\n',
        "gateway/gw_static.h": '#include "gw_loop.h"\n',
        "gateway/gw_http.h": '#include "gw_conn.h"\n#include "gw_static.h"\n',
        "gateway/gw_ws.h": '#include "gw_http.h"\n',
        "gateway/gw_engine.h": '#include "app.h"\n#include "gw_ws.h"\n',
        "gateway/gw_sio.h": '#include "gw_engine.h"\n',
        "gateway/gw_worker.h": '#include "gw_sio.h"\n',
        "gateway/conn.c": '#include <errno.h>\n#include "gw_conn.h"\n',
        "gateway/http.c": '#include <http_parser.h>\n#include "gw_http.h"\n',
        "gateway/worker.c": '#include "gw_worker.h"\n',
        "gateway/main.c": '#include "gw.h"\n',
        "gateway/app_echo.c": '#include "app.h"\n',
        "gateway/chat/gc.h": '#include "app.h"\n#include "cm_log.h"\n',
        "gateway/chat/send.c": '#include "gc.h"\n#include "eio.h"\n',
        "storage/config.h": "", "storage/st.h": '#include "config.h"\n',
        "storage/api.c": '#include "st.h"\n#include "cm_log.h"\n',
    }
    bad = {  # file: (line appended, a piece of the message it must produce)
        "proto/eio.h": ('#include <event2/event.h>\n', "does no I/O"),
        "proto/pr.h": ('#include "cm_log.h"\n', "proto/ includes only proto/"),
        "common/cm_log.h": ('#include "gw.h"\n', "common/ includes only"),
        "storage/api.c": ('#include "app.h"\n', "never include each other"),
        "gateway/http.c": ('#include "gw_engine.h"\n', "(layer engine, above it)"),
        "gateway/conn.c": ('#include "gw.h"\n', "not the umbrella gw.h"),
        "gateway/gw_loop.h": ('#include "gw_conn.h"\n', "(layer conn, above it)"),
        "gateway/worker.c": ('#include "gw_new.h"\n', "has no layer"),
        "gateway/app_echo.c": ('#include "gw_conn.h"\n', "through app.h, not gw_conn.h"),
        "gateway/chat/send.c": ('#include "gw.h"\n', "gateway/chat/ includes only"),
        "gateway/chat/gc.h": ('#include "gw_loop.h"\n', "gateway/chat/ includes only"),
        "gateway/newfile.c": ("", "not placed"),  # files only the bad tree has
        "gateway/gw_new.h": ("", "not placed"),
    }
    failed = 0

    def build(tmp, with_bad):
        paths = set(files) | (set(bad) if with_bad else set())
        for path in paths:
            p = os.path.join(tmp, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as fh:
                fh.write(files.get(path, "") + (bad[path][0] if with_bad and path in bad else ""))

    with tempfile.TemporaryDirectory() as clean:
        build(clean, False)
        errors, warnings = check(clean)
        if errors:
            print("self-test: the clean tree fails:\n  " + "\n  ".join(errors))
            failed = 1
        if warnings:
            print("self-test: the clean tree warns:\n  " + "\n  ".join(warnings))
            failed = 1
    with tempfile.TemporaryDirectory() as dirty:
        build(dirty, True)
        errors, _ = check(dirty)
        for path, (_, piece) in bad.items():
            if not any(e.startswith(path) and piece in e for e in errors):
                print(f"self-test: no error for {path} ({piece!r}); got:\n  " + "\n  ".join(errors))
                failed = 1
        if len(errors) != len(bad):
            print(f"self-test: {len(errors)} errors for {len(bad)} violations:\n  " + "\n  ".join(errors))
            failed = 1
    print("self-test: " + ("FAILED" if failed else "ok"))
    return failed


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if len(argv) == 3 and argv[1] == "--root":
        root = argv[2]
    elif len(argv) != 1:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    errors, warnings = check(root)
    for w in warnings:
        print("warning: " + w)
    for e in errors:
        print("error: " + e)
    print(f"check-layers: {len(errors)} error(s), {len(warnings)} warning(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
