/*
 * gw_static.h - files served from memory (static.c): the Socket.IO browser
 * client under the Engine.IO path and the --web-root. One layer of the
 * transport (the order is in gw_loop.h); the HTTP layer serves them.
 */
#ifndef GW_STATIC_H
#define GW_STATIC_H

#include "gw_loop.h"

/* ---- static files (static.c) ------------------------------------------------
 * Read into memory at start-up and immutable after: safe to read from every
 * worker without locks. */
typedef struct gw_static_file {
    char *name;          /* path under its root, no leading '/' */
    const char *ctype;   /* Content-Type */
    const char *cache;   /* Cache-Control */
    char etag[20];       /* quoted: a prefix of the SHA-256 of the bytes */
    gw_blob *body;       /* immortal (GW_BLOB_IMMORTAL), shared by every worker */
} gw_static_file;

/* On the main thread before the workers start: the Socket.IO client (with
 * --serve-client on, when the app is Socket.IO level: socketio) and the
 * --web-root. -1 when a setting is wrong (an error naming it was printed). */
int gw__static_load(const gw_config *cfg, int socketio);
void gw__static_free(void);
/* The client file NAME (what follows the Engine.IO path), or NULL. */
const gw_static_file *gw__static_client(pr_view name);
/* The web root's file for a request path: 0 and *f; PR_ENOTFOUND (also when
 * there is no web root); PR_EINVAL for a path that can name no file. */
int gw__static_web(pr_view path, const gw_static_file **f);
/* Pure, exposed for unit tests. clean_path turns a request path ("/a/b%20c",
 * no query) into the name it stands for ("a/b c"; "/" and "dir/" name
 * index.html) in out (NUL-terminated); returns its length, PR_EINVAL for a
 * path that is not '/'-rooted, has a bad escape, a NUL or control byte, a
 * backslash, or an empty, "." or ".." segment (encoded or not), PR_ETOOBIG
 * when it does not fit. mime is the Content-Type for a name's extension.
 * etag_match: whether an If-None-Match value matches etag (weakly; "*"). */
int gw__static_clean_path(pr_view path, char *out, size_t cap);
const char *gw__static_mime(const char *name);
int gw__static_etag_match(pr_view header, const char *etag);

#endif
